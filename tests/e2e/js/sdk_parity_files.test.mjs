// Issue 14, filesystem rows of the SDK parity table (npm e2b 2.51): file metadata
// (`user.e2b.*` xattrs) and the events of a recursive watchDir.
// docs/sdk-parity.md maps each method/option to the test here that proves it.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Sandbox } from 'e2b'
import { createSandbox, killAll, sleep, waitFor } from './helpers.mjs'

const T = { timeout: 180_000 }

/** The sandbox's own view of a path's `user.*` xattrs (the template has python3, not getfattr). */
async function xattrs(sbx, path, user) {
  const py = `import os,json; p=${JSON.stringify(path)}; print(json.dumps({n: os.getxattr(p, n).decode() for n in sorted(os.listxattr(p))}))`
  return JSON.parse((await sbx.commands.run(`python3 -c '${py}'`, { user })).stdout)
}

test('file metadata: write/writeFiles store user.e2b.* xattrs; getInfo, list, rename, uploads show it; set inside too; survives pause', T, async () => {
  const sbx = await createSandbox()
  try {
    const info = await sbx.files.write('meta/a.txt', 'a', { metadata: { Author: 'me', purpose: 'test run' } })
    assert.deepEqual(info.metadata, { author: 'me', purpose: 'test run' }, 'the upload answers with it, keys lowercased')
    assert.deepEqual(await xattrs(sbx, '/home/user/meta/a.txt'), { 'user.e2b.author': 'me', 'user.e2b.purpose': 'test run' })
    assert.deepEqual((await sbx.files.getInfo('meta/a.txt')).metadata, { author: 'me', purpose: 'test run' })
    const listed = await sbx.files.list('meta')
    assert.deepEqual(listed.find((e) => e.name === 'a.txt').metadata, { author: 'me', purpose: 'test run' })
    const moved = await sbx.files.rename('meta/a.txt', 'meta/b.txt')
    assert.deepEqual(moved.metadata, { author: 'me', purpose: 'test run' }, 'rename keeps it')

    // Several files in one multipart request, and gzip (octet-stream): each file gets the map.
    const many = await sbx.files.writeFiles([{ path: 'meta/c.txt', data: 'c' }, { path: 'meta/d.txt', data: 'd' }], { metadata: { batch: '1' } })
    assert.deepEqual(many.map((f) => f.metadata), [{ batch: '1' }, { batch: '1' }])
    const gz = await sbx.files.write('meta/e.txt', 'e'.repeat(1000), { gzip: true, metadata: { zipped: 'yes' } })
    assert.deepEqual(gz.metadata, { zipped: 'yes' })

    // An overwrite replaces the set, as envd's does (O_TRUNC keeps xattrs, envd clears them).
    const again = await sbx.files.write('meta/c.txt', 'c2')
    assert.equal(again.metadata, undefined, 'no metadata: no key in the answer')
    assert.equal((await sbx.files.getInfo('meta/c.txt')).metadata, undefined)

    // Set inside the sandbox (a file and a directory), and an xattr outside user.e2b.
    await sbx.commands.run(`python3 -c 'import os; os.setxattr("/home/user/meta/d.txt", "user.e2b.origin", b"inside"); os.setxattr("/home/user/meta", "user.e2b.kind", b"dir"); os.setxattr("/home/user/meta/d.txt", "user.other", b"x")'`)
    assert.deepEqual((await sbx.files.getInfo('meta/d.txt')).metadata, { batch: '1', origin: 'inside' })
    assert.deepEqual((await sbx.files.getInfo('meta')).metadata, { kind: 'dir' })

    // As root, in root's home.
    const r = await sbx.files.write('/root/meta.txt', 'r', { user: 'root', metadata: { owner: 'root' } })
    assert.deepEqual(r.metadata, { owner: 'root' })
    assert.deepEqual((await sbx.files.getInfo('/root/meta.txt', { user: 'root' })).metadata, { owner: 'root' })

    // The other EntryInfo fields the SDK parses.
    const e = await sbx.files.getInfo('meta/b.txt')
    assert.equal(e.type, 'file')
    assert.equal(e.size, 1)
    assert.equal(e.mode, 0o644)
    assert.equal(e.permissions, '-rw-r--r--')
    assert.equal(e.owner, 'user')
    assert.equal(e.group, 'user')
    assert.ok(e.modifiedTime instanceof Date && Math.abs(e.modifiedTime - Date.now()) < 120_000)
    await sbx.commands.run('ln -s meta/b.txt link')
    assert.equal((await sbx.files.getInfo('link')).symlinkTarget, '/home/user/meta/b.txt')

    // Files keep their xattrs across a pause.
    assert.equal(await sbx.pause(), true)
    const back = await Sandbox.connect(sbx.sandboxId)
    assert.deepEqual((await back.files.getInfo('meta/b.txt')).metadata, { author: 'me', purpose: 'test run' })
    assert.deepEqual((await back.files.getInfo('/root/meta.txt', { user: 'root' })).metadata, { owner: 'root' })
  } finally {
    await killAll(sbx)
  }
})

test('watchDir recursive: an upload into a nested dir reports CREATE (relative name), CHMOD, WRITE, as envd does', T, async () => {
  const sbx = await createSandbox()
  try {
    await sbx.files.makeDir('watched/nested')
    const events = []
    const handle = await sbx.files.watchDir('watched', (e) => events.push(`${e.type} ${e.name}`), { recursive: true })
    try {
      await sbx.files.write('watched/nested/file.txt', 'This file will be watched.')
      await waitFor('three events', () => events.length >= 3, 10_000, 50)
      await sleep(500) // and no more
      assert.deepEqual(events, ['create nested/file.txt', 'chmod nested/file.txt', 'write nested/file.txt'])
    } finally {
      await handle.stop()
    }
  } finally {
    await killAll(sbx)
  }
})
