// Novita's mountVolume / unmountVolume (novita-sandbox 2.1.1) on a running sandbox:
// `POST /sandboxes/{id}/volume-mounts {name, path}` and `DELETE ...?path=&force=`. The
// volume appears in the running sandbox (written from inside, seen through the Volume
// content API), stays across pause + connect and in a snapshot's copies, is refused on a
// paused sandbox, on bad paths and through a planted symlink; unmount refuses while in
// use unless forced, and a create-time mount until a resume; the volume cannot be
// deleted while mounted, and can after.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Sandbox as Novita } from 'novita-sandbox'
import { Sandbox, Volume } from 'e2b'
import { killAll, runTag, seen, sleep } from './helpers.mjs'

const T = { timeout: 300_000 }

async function raw(method, path, body) {
  const r = await fetch(`${process.env.E2B_API_URL}${path}`, {
    method,
    headers: { 'X-API-KEY': process.env.E2B_API_KEY, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  })
  return { status: r.status, body: await r.json().catch(() => null) }
}

async function novita() {
  const sbx = await Novita.create({ timeoutMs: 300_000 })
  seen(sbx.sandboxId)
  return sbx
}

test('mountVolume into a running sandbox: written inside, seen outside; kept across pause and in snapshots; unmount; then the volume can go', T, async () => {
  const name = runTag('hot')
  const vol = await Volume.create(name)
  const made = []
  try {
    const sbx = await novita()
    made.push(sbx.sandboxId)
    await vol.writeFile('/from-api.txt', 'api side')

    const info = await sbx.mountVolume(name, '/mnt/hot/')
    assert.equal(info.sandboxId, sbx.sandboxId)
    assert.deepEqual(info.volumeMounts, [{ name, path: '/mnt/hot' }])
    assert.deepEqual((await Novita.getInfo(sbx.sandboxId)).volumeMounts, [{ name, path: '/mnt/hot' }])
    // Written from inside (as the default user), read through the content API; and back.
    const w = await sbx.commands.run('echo inside > /mnt/hot/in.txt && cat /mnt/hot/from-api.txt')
    assert.equal(w.stdout, 'api side')
    assert.equal(await vol.readFile('/in.txt'), 'inside\n')
    const opts = await sbx.commands.run("awk '$2 == \"/mnt/hot\" {print $4}' /proc/mounts")
    assert.match(opts.stdout, /nosuid/)
    assert.match(opts.stdout, /nodev/)

    // A second mount at or under the same place is refused; so is deleting the volume.
    assert.equal((await raw('POST', `/sandboxes/${sbx.sandboxId}/volume-mounts`, { name, path: '/mnt/hot/sub' })).status, 409)
    await assert.rejects(Volume.destroy(vol.volumeId), /mounted/)

    // Unmount refuses while a process works under it, unless forced.
    const worker = await sbx.commands.run('cd /mnt/hot && sleep 600', { background: true })
    await sleep(300)
    const busy = await raw('DELETE', `/sandboxes/${sbx.sandboxId}/volume-mounts?path=/mnt/hot`)
    assert.equal(busy.status, 409, JSON.stringify(busy.body))
    assert.match(busy.body.message, /force/)
    const off = await sbx.unmountVolume('/mnt/hot', { force: true })
    assert.deepEqual(off.volumeMounts, [])
    assert.equal((await sbx.commands.run('test -e /mnt/hot/in.txt; echo $?')).stdout, '1\n')
    // Its cwd is on the detached mount, which no checkpoint can hold: it ends before the pause.
    await worker.kill()

    // Mounted again; pause + connect keeps it, with what was written.
    await sbx.mountVolume(name, '/mnt/hot')
    await sbx.commands.run('echo before-pause > /mnt/hot/p.txt')
    await sbx.pause()
    assert.equal((await raw('POST', `/sandboxes/${sbx.sandboxId}/volume-mounts`, { name, path: '/mnt/other' })).status, 409, 'a paused sandbox is refused')
    const back = await Novita.connect(sbx.sandboxId)
    assert.equal((await back.commands.run('cat /mnt/hot/p.txt')).stdout, 'before-pause\n')
    await back.commands.run('echo after-resume > /mnt/hot/r.txt')
    assert.equal(await vol.readFile('/r.txt'), 'after-resume\n')
    assert.deepEqual((await Novita.getInfo(sbx.sandboxId)).volumeMounts, [{ name, path: '/mnt/hot' }])

    // A snapshot's copy mounts it too.
    const e2b = await Sandbox.connect(sbx.sandboxId)
    const snap = await e2b.createSnapshot()
    const copy = await Sandbox.create(snap.snapshotId, { timeoutMs: 120_000 })
    seen(copy.sandboxId)
    made.push(copy.sandboxId)
    assert.equal((await copy.commands.run('cat /mnt/hot/r.txt')).stdout, 'after-resume\n')
    await Sandbox.kill(copy.sandboxId)
    await Sandbox.deleteSnapshot(snap.snapshotId)

    // Unmounted after the resume; then the volume can be deleted.
    const un = await raw('DELETE', `/sandboxes/${sbx.sandboxId}/volume-mounts?path=/mnt/hot`)
    assert.equal(un.status, 200, JSON.stringify(un.body))
    assert.deepEqual(un.body.volumeMounts, [])
    assert.equal((await back.commands.run('test -e /mnt/hot/r.txt; echo $?')).stdout, '1\n')
    assert.equal((await raw('DELETE', `/sandboxes/${sbx.sandboxId}/volume-mounts?path=/mnt/hot`)).status, 400, 'nothing mounted there')
    assert.equal(await Volume.destroy(vol.volumeId), true)
  } finally {
    await killAll(made)
    await Volume.destroy(vol.volumeId).catch(() => {})
  }
})

test('mountVolume refuses bad paths, unknown volumes, and never follows a symlink the sandbox planted', T, async () => {
  const name = runTag('hotbad')
  const vol = await Volume.create(name)
  let sbx
  try {
    sbx = await novita()
    const url = `/sandboxes/${sbx.sandboxId}/volume-mounts`
    for (const path of ['/proc/x', '/sys', '/dev/shm', 'relative/dir', '/a/../b', '/']) {
      const r = await raw('POST', url, { name, path })
      assert.equal(r.status, 400, `${path}: ${JSON.stringify(r.body)}`)
    }
    await assert.rejects(sbx.mountVolume(name, '/proc/self'), /cannot be mounted on \/proc/)
    const unknown = await raw('POST', url, { name: runTag('novol'), path: '/mnt/x' })
    assert.equal(unknown.status, 400)
    assert.match(unknown.body.message, /not found/)
    assert.equal((await raw('POST', `/sandboxes/nosuchsandbox0000000/volume-mounts`, { name, path: '/mnt/x' })).status, 404)

    // /home/user/evil -> /etc: the walk refuses the symlink, nothing lands in /etc.
    await sbx.commands.run('ln -s /etc /home/user/evil')
    const planted = await raw('POST', url, { name, path: '/home/user/evil/x' })
    assert.equal(planted.status, 400, JSON.stringify(planted.body))
    assert.match(planted.body.message, /not a directory/)
    assert.equal((await sbx.commands.run('test -e /etc/x; echo $?')).stdout, '1\n')
    assert.deepEqual((await Novita.getInfo(sbx.sandboxId)).volumeMounts, [])
    // A failed mount leaves the volume deletable.
    assert.equal(await Volume.destroy(vol.volumeId), true)
  } finally {
    await killAll(sbx)
    await Volume.destroy(vol.volumeId).catch(() => {})
  }
})

test('unmountVolume of a volume mounted at create: refused while the kernel locks it; after a resume it unmounts', T, async () => {
  const name = runTag('hotcreate')
  const vol = await Volume.create(name)
  let sbx
  try {
    sbx = await Novita.create({ timeoutMs: 300_000, volumeMounts: { '/mnt/made': name } })
    seen(sbx.sandboxId)
    assert.deepEqual((await Novita.getInfo(sbx.sandboxId)).volumeMounts, [{ name, path: '/mnt/made' }])
    const locked = await raw('DELETE', `/sandboxes/${sbx.sandboxId}/volume-mounts?path=/mnt/made&force=true`)
    assert.equal(locked.status, 409, JSON.stringify(locked.body))
    assert.match(locked.body.message, /locks it/)
    assert.equal((await sbx.commands.run('ls -d /mnt/made && echo $?')).stdout, '/mnt/made\n0\n')
    await sbx.pause()
    const back = await Novita.connect(sbx.sandboxId)
    const un = await raw('DELETE', `/sandboxes/${sbx.sandboxId}/volume-mounts?path=/mnt/made`)
    assert.equal(un.status, 200, JSON.stringify(un.body))
    assert.equal((await back.commands.run("grep -c ' /mnt/made ' /proc/mounts || true")).stdout, '0\n')
    assert.equal(await Volume.destroy(vol.volumeId), true)
  } finally {
    await killAll(sbx)
    await Volume.destroy(vol.volumeId).catch(() => {})
  }
})
