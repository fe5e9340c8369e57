// Volumes with npm e2b 2.51: Volume.create / list / getInfo / connect / destroy, the file
// methods of a volume (writeFile, readFile, makeDir, list, getInfo, exists,
// updateMetadata, remove), and volumeMounts at Sandbox.create: a volume outlives its
// sandboxes, is kept across pause/resume, is shared by sandboxes that mount it, and
// follows a snapshot's copies.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Sandbox, Volume } from 'e2b'
import { createSandbox, killAll, runTag } from './helpers.mjs'

const T = { timeout: 300_000 }

test('a volume outlives sandboxes, survives pause/resume, and is shared', T, async () => {
  const name = runTag('vol')
  const vol = await Volume.create(name)
  const sandboxes = []
  try {
    assert.match(vol.volumeId, /^[a-z0-9]+$/)
    assert.equal(vol.name, name)
    assert.ok((await Volume.list()).some((v) => v.volumeId === vol.volumeId && v.name === name))
    const info = await Volume.getInfo(vol.volumeId)
    assert.equal(info.name, name)

    // Files through the volume's content API, before any sandbox mounts it.
    await vol.writeFile('/seed/hello.txt', 'from the api', { force: true })
    assert.equal(await vol.readFile('/seed/hello.txt'), 'from the api')

    // A sandbox mounting it, as the default user.
    const a = await createSandbox({ volumeMounts: { '/mnt/data': vol } })
    sandboxes.push(a)
    assert.deepEqual((await Sandbox.getInfo(a.sandboxId)).volumeMounts, [{ name, path: '/mnt/data' }])
    assert.equal((await a.commands.run('cat /mnt/data/seed/hello.txt')).stdout, 'from the api')
    const who = await a.commands.run('id -un; touch /mnt/data/by-user && stat -c %U /mnt/data/by-user')
    assert.equal(who.stdout, 'user\nuser\n')
    await a.files.write('/mnt/data/notes.txt', 'written in a')
    const opts = await a.commands.run("awk '$2 == \"/mnt/data\" {print $4}' /proc/mounts")
    assert.match(opts.stdout, /nosuid/)
    assert.match(opts.stdout, /nodev/)

    // Pause + connect: the mount comes back, with what was written.
    await a.pause()
    const a2 = await Sandbox.connect(a.sandboxId)
    assert.equal(await a2.files.read('/mnt/data/notes.txt'), 'written in a')
    await a2.files.write('/mnt/data/after-resume.txt', 'still writable')
    assert.equal(await vol.readFile('/after-resume.txt'), 'still writable')

    // Deleting it while a sandbox mounts it is refused.
    await assert.rejects(Volume.destroy(vol.volumeId), /mounted/)

    // A second sandbox mounting it by name sees what the first wrote, live.
    const b = await createSandbox({ volumeMounts: { '/data': name } })
    sandboxes.push(b)
    assert.equal(await b.files.read('/data/notes.txt'), 'written in a')
    await b.files.write('/data/from-b.txt', 'b')
    assert.equal(await a2.files.read('/mnt/data/from-b.txt'), 'b')

    // Killed: the files stay.
    await Sandbox.kill(a.sandboxId)
    assert.equal(await b.files.read('/data/after-resume.txt'), 'still writable')
    await Sandbox.kill(b.sandboxId)
    assert.equal(await vol.readFile('/notes.txt'), 'written in a')

    // Content API: listing, metadata, existence, removal.
    const entries = await vol.list('/', { depth: 2 })
    assert.ok(entries.some((e) => e.path === '/seed/hello.txt' && e.type === 'file'))
    const st = await vol.getInfo('/notes.txt')
    assert.equal(st.size, 'written in a'.length)
    assert.equal(st.uid, 1000)
    assert.ok(st.mtime instanceof Date)
    assert.equal((await vol.updateMetadata('/notes.txt', { mode: 0o600 })).mode, 0o600)
    await vol.makeDir('/made/deep', { force: true })
    assert.equal((await vol.getInfo('/made/deep')).type, 'directory')
    assert.equal(await vol.exists('/made'), true)
    await vol.remove('/made')
    assert.equal(await vol.exists('/made'), false)

    // Connect gives a handle with a token that works.
    const again = await Volume.connect(vol.volumeId)
    assert.equal(await again.readFile('/from-b.txt'), 'b')
  } finally {
    await killAll(sandboxes)
    await Volume.destroy(vol.volumeId).catch(() => {})
  }
  assert.equal(await Volume.destroy(vol.volumeId), false, 'already gone')
  assert.ok(!(await Volume.list()).some((v) => v.volumeId === vol.volumeId))
})

test('a snapshot of a sandbox with a volume makes copies that mount it', T, async () => {
  const vol = await Volume.create(runTag('volsnap'))
  const ids = []
  let snap
  try {
    const src = await createSandbox({ volumeMounts: { '/shared': vol } })
    ids.push(src.sandboxId)
    await src.files.write('/shared/before.txt', 'before')
    snap = await src.createSnapshot()
    const copy = await createSandbox({ template: snap.snapshotId })
    ids.push(copy.sandboxId)
    assert.deepEqual((await Sandbox.getInfo(copy.sandboxId)).volumeMounts, [{ name: vol.name, path: '/shared' }])
    assert.equal(await copy.files.read('/shared/before.txt'), 'before')
    // The same volume, not a copy of it: a write in one shows in the other.
    await copy.files.write('/shared/from-copy.txt', 'copy')
    assert.equal(await src.files.read('/shared/from-copy.txt'), 'copy')
  } finally {
    await killAll(ids)
    if (snap) await Sandbox.deleteSnapshot(snap.snapshotId).catch(() => {})
    await Volume.destroy(vol.volumeId).catch(() => {})
  }
})

test('bad volume requests get clear errors', T, async () => {
  await assert.rejects(Volume.create('no spaces allowed'), /letters, digits/)
  const name = runTag('voldup')
  const vol = await Volume.create(name)
  try {
    await assert.rejects(Volume.create(name), /already exists/)
    await assert.rejects(createSandbox({ volumeMounts: { '/proc/x': vol } }), /cannot be mounted/)
    await assert.rejects(createSandbox({ volumeMounts: { '/data': 'no-such-volume-xyz' } }), /not found/)
    await assert.rejects(new Volume(vol.volumeId, name, 'wrong-token').readFile('/x'), /token/)
  } finally {
    await Volume.destroy(vol.volumeId)
  }
})
