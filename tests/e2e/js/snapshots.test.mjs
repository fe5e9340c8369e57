// Snapshots and forks with npm e2b 2.51: Sandbox.fork / sandbox.fork, createSnapshot,
// listSnapshots (filters, pagination), Sandbox.create from a snapshot, deleteSnapshot.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { Sandbox, SandboxError, SandboxNotFoundError } from 'e2b'
import { createSandbox, drain, killAll, runTag, seen, sleep } from './helpers.mjs'

const T = { timeout: 300_000 }

// A process whose state lives only in memory: a random value picked at start and a counter
// of the SIGUSR1s it got. Each SIGUSR1 writes "<value> <count>" to /tmp/holder.out.
const HOLDER = `
import os, secrets, signal, time
value = secrets.token_hex(8)
count = 0
def on_usr1(sig, frame):
    global count
    count += 1
    with open('/tmp/holder.out.tmp', 'w') as f:
        f.write(f'{value} {count}')
    os.rename('/tmp/holder.out.tmp', '/tmp/holder.out')
signal.signal(signal.SIGUSR1, on_usr1)
open('/tmp/holder.ready', 'w').close()
while True:
    time.sleep(0.05)
`

/** Starts the holder in `sbx`; returns its pid. */
async function startHolder(sbx) {
  await sbx.files.write('/tmp/holder.py', HOLDER)
  const h = await sbx.commands.run('exec python3 -u /tmp/holder.py', { background: true, timeoutMs: 0 })
  await waitForCmd(sbx, 'holder ready', 'test -f /tmp/holder.ready')
  await h.disconnect()
  return h.pid
}

/** Asks the holder (pid) in `sbx` for its state: [value, count]. The signal is re-sent
 *  until the answer appears (right after a restore, memory comes in lazily). */
async function askHolder(sbx, pid) {
  const r = await sbx.commands.run(
    `rm -f /tmp/holder.out; for i in $(seq 1 200); do kill -USR1 ${pid} 2>/dev/null; ` +
      `for j in 1 2 3 4 5; do [ -f /tmp/holder.out ] && { cat /tmp/holder.out; exit 0; }; sleep 0.02; done; done; exit 7`,
    { timeoutMs: 60_000 },
  )
  const [value, count] = r.stdout.trim().split(' ')
  return [value, Number(count)]
}

async function waitForCmd(sbx, what, cmd, ms = 15_000) {
  const end = Date.now() + ms
  while (Date.now() < end) {
    const r = await sbx.commands.run(`${cmd} && echo yes || echo no`)
    if (r.stdout.trim() === 'yes') return
    await sleep(100)
  }
  throw new Error(`timed out waiting for ${what}`)
}

const exists = async (sbx, path) => (await sbx.commands.run(`test -e ${path} && echo yes || echo no`)).stdout.trim() === 'yes'

test('fork count 3: each fork runs with the source files and process memory, forks are independent, the source keeps running', T, async () => {
  const tag = runTag('fork')
  const made = []
  try {
    const src = await createSandbox({ metadata: { suite: 'snapshots', tag } })
    made.push(src)
    const content = randomBytes(16).toString('hex')
    await src.files.write('/home/user/source.txt', content)
    const pid = await startHolder(src)
    const [value, count1] = await askHolder(src, pid)
    assert.match(value, /^[0-9a-f]{16}$/)
    assert.equal(count1, 1)

    const t0 = Date.now()
    const results = await src.fork({ count: 3, timeoutMs: 120_000 })
    console.log(`fork of 3 took ${Date.now() - t0} ms`)
    assert.equal(results.length, 3, 'one result per requested fork')
    for (const r of results) if (r instanceof Sandbox) { seen(r.sandboxId); made.push(r) }
    for (const r of results) assert.ok(r instanceof Sandbox, `every fork started: ${r}`)
    const forks = results
    const ids = new Set([src.sandboxId, ...forks.map((f) => f.sandboxId)])
    assert.equal(ids.size, 4, 'forks have their own ids')

    // The source keeps running with its id.
    assert.equal(await src.isRunning(), true)
    assert.equal((await src.getInfo()).state, 'running')

    for (const [i, f] of forks.entries()) {
      assert.match(f.sandboxId, /^[a-z0-9]+$/)
      assert.equal(await f.isRunning(), true, `fork ${i} runs`)
      const info = await f.getInfo()
      assert.equal(info.state, 'running')
      // The fork timeout (120 s) applies to the fork.
      const ttl = info.endAt.getTime() - Date.now()
      assert.ok(ttl > 30_000 && ttl <= 125_000, `fork ${i} ends in ~120 s (in ${ttl} ms)`)
      assert.equal(await f.files.read('/home/user/source.txt'), content, `fork ${i} has the source's file`)
      // Same process, same memory: the value, and the counter continues from the source's.
      assert.deepEqual(await askHolder(f, pid), [value, 2], `fork ${i} has the holder's memory`)
    }
    // Each holder counted on its own: the source's counter was not moved by the forks.
    assert.deepEqual(await askHolder(src, pid), [value, 2], 'the source holder is its own process')
    assert.deepEqual(await askHolder(forks[0], pid), [value, 3])
    assert.deepEqual(await askHolder(forks[1], pid), [value, 3])

    // Files written in one fork are absent everywhere else.
    for (const [i, f] of forks.entries()) await f.files.write(`/home/user/only-fork-${i}.txt`, `fork ${i}`)
    await src.files.write('/home/user/only-source.txt', 'source')
    for (const [i, f] of forks.entries()) {
      for (let j = 0; j < forks.length; j++) {
        assert.equal(await exists(f, `/home/user/only-fork-${j}.txt`), i === j, `fork ${i} sees only-fork-${j}: ${i === j}`)
      }
      assert.equal(await exists(f, '/home/user/only-source.txt'), false, `fork ${i} does not see the source's later file`)
    }
    for (let j = 0; j < forks.length; j++) assert.equal(await exists(src, `/home/user/only-fork-${j}.txt`), false)
    // Killing a fork leaves the source and the other forks alone.
    await Sandbox.kill(forks[2].sandboxId)
    assert.equal(await src.isRunning(), true)
    assert.equal(await forks[0].isRunning(), true)
    assert.equal((await forks[1].commands.run('cat /home/user/source.txt')).stdout, content)
  } finally {
    await killAll(made)
  }
})

test('Sandbox.fork of an unknown sandbox rejects with SandboxNotFoundError', T, async () => {
  await assert.rejects(Sandbox.fork('nosuchsandbox0000000', { count: 1 }), SandboxNotFoundError)
})

test('snapshots: create (with and without name), list (by sandbox, by name, paginated), create from id and name, delete', T, async () => {
  const tag = runTag('snap')
  const made = []
  const snaps = []
  try {
    const src = await createSandbox({ metadata: { suite: 'snapshots', tag } })
    made.push(src)
    const content = randomBytes(16).toString('hex')
    await src.files.write('/home/user/snap.txt', content)
    const pid = await startHolder(src)
    const [value] = await askHolder(src, pid) // count 1 in the snapshots

    // Without a name: `<id>:default`, no names.
    const plain = await src.createSnapshot()
    snaps.push(plain.snapshotId)
    assert.match(plain.snapshotId, /^[a-z0-9]+:default$/, JSON.stringify(plain))
    assert.deepEqual(plain.names, [])
    // With a name (static variant): `stasis/<name>:default`, listed in names.
    const name = `e2e-${tag}`
    const named = await Sandbox.createSnapshot(src.sandboxId, { name })
    snaps.push(named.snapshotId)
    assert.equal(named.snapshotId, `stasis/${name}:default`)
    assert.deepEqual(named.names, [`stasis/${name}:default`])

    // The source keeps running and its state moves on independently.
    assert.equal(await src.isRunning(), true)
    await src.files.write('/home/user/after.txt', 'after the snapshots')
    assert.deepEqual(await askHolder(src, pid), [value, 2])

    // List: by source sandbox (static and instance variants), by name, paginated.
    const want = [plain.snapshotId, named.snapshotId].sort()
    const [bySandbox] = await drain(Sandbox.listSnapshots({ sandboxId: src.sandboxId }))
    assert.deepEqual(bySandbox.map((s) => s.snapshotId).sort(), want, JSON.stringify(bySandbox))
    const namedListed = bySandbox.find((s) => s.snapshotId === named.snapshotId)
    assert.deepEqual(namedListed.names, named.names)
    const [mine] = await drain(src.listSnapshots())
    assert.deepEqual(mine.map((s) => s.snapshotId).sort(), want)
    const [paged, pages] = await drain(Sandbox.listSnapshots({ sandboxId: src.sandboxId, limit: 1 }))
    assert.deepEqual(paged.map((s) => s.snapshotId).sort(), want, 'each once across pages')
    assert.ok(pages >= 2 && pages <= 3, `limit 1 gives one snapshot a page (${pages} pages)`)
    const [byName] = await drain(Sandbox.listSnapshots({ name }))
    assert.deepEqual(byName.map((s) => s.snapshotId), [named.snapshotId])
    const [byQualified] = await drain(Sandbox.listSnapshots({ name: named.snapshotId }))
    assert.deepEqual(byQualified.map((s) => s.snapshotId), [named.snapshotId])
    const [other] = await drain(Sandbox.listSnapshots({ sandboxId: 'nosuchsandbox0000000' }))
    assert.deepEqual(other, [])
    const [all] = await drain(Sandbox.listSnapshots())
    for (const id of want) assert.ok(all.some((s) => s.snapshotId === id), `${id} in the unfiltered list`)

    // New sandboxes from the id and from the name: files and process memory as at capture.
    for (const ref of [plain.snapshotId, name, named.snapshotId]) {
      const fromSnap = await Sandbox.create(ref, { timeoutMs: 120_000, requestTimeoutMs: 60_000, metadata: { suite: 'snapshots', tag } })
      seen(fromSnap.sandboxId)
      made.push(fromSnap)
      assert.notEqual(fromSnap.sandboxId, src.sandboxId)
      assert.equal(await fromSnap.isRunning(), true)
      assert.equal(await fromSnap.files.read('/home/user/snap.txt'), content, `from ${ref}: the file`)
      assert.equal(await exists(fromSnap, '/home/user/after.txt'), false, `from ${ref}: not the source's later file`)
      assert.deepEqual(await askHolder(fromSnap, pid), [value, 2], `from ${ref}: the holder's memory as captured`)
      await fromSnap.files.write('/home/user/from-snap.txt', ref)
    }
    assert.equal(await exists(src, '/home/user/from-snap.txt'), false)

    // Delete: true, then false (404); gone from the list; sandboxes made from it keep working.
    assert.equal(await Sandbox.deleteSnapshot(plain.snapshotId), true)
    assert.equal(await Sandbox.deleteSnapshot(plain.snapshotId), false, 'second delete: not found')
    const [left] = await drain(Sandbox.listSnapshots({ sandboxId: src.sandboxId }))
    assert.deepEqual(left.map((s) => s.snapshotId), [named.snapshotId])
    const live = made[made.length - 1]
    assert.equal((await live.commands.run('cat /home/user/snap.txt')).stdout, content)

    // Creating from a deleted snapshot fails with the SDK's error.
    const err = await Sandbox.create(plain.snapshotId, { timeoutMs: 60_000 }).then(
      (s) => { seen(s.sandboxId); made.push(s); return null },
      (e) => e,
    )
    console.log(`create from a deleted snapshot: ${err?.constructor?.name} ${err?.statusCode} ${err?.message}`)
    assert.ok(err instanceof SandboxError, `create from a deleted snapshot rejects with a SandboxError: ${err}`)
    assert.equal(err.statusCode, 404, `404 (template not found): ${err.message}`)

    // The named one deletes by its namespaced id ('/' inside one path segment).
    assert.equal(await Sandbox.deleteSnapshot(named.snapshotId), true)
    assert.equal(await Sandbox.deleteSnapshot(named.snapshotId), false)
    const [none] = await drain(Sandbox.listSnapshots({ sandboxId: src.sandboxId }))
    assert.deepEqual(none, [])
    await assert.rejects(Sandbox.create(name, { timeoutMs: 60_000 }), SandboxError)
    snaps.length = 0
  } finally {
    for (const id of snaps) await Sandbox.deleteSnapshot(id).catch((e) => console.error(`cleanup: delete snapshot ${id}: ${e}`))
    await killAll(made)
  }
})

test('createSnapshot of an unknown sandbox rejects with SandboxNotFoundError', T, async () => {
  await assert.rejects(Sandbox.createSnapshot('nosuchsandbox0000000'), SandboxNotFoundError)
})
