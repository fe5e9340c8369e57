// Issue 14: SDK parity with npm e2b 2.51: setTimeout(0) and --max-timeout, relative
// command cwd, multi-file and gzip uploads, list filters, the metrics range.
// docs/sdk-parity.md maps each method/option to the test here that proves it.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Sandbox, NotFoundError, SandboxNotFoundError, TimeoutError } from 'e2b'
import { HOST_ROUTING, createSandbox, drain, killAll, runTag, sleep } from './helpers.mjs'

const T = { timeout: 180_000 }
const DAY_MS = 86_400_000
const gone = (e) => e instanceof SandboxNotFoundError || e instanceof NotFoundError

test('setTimeout(0) with onTimeout pause: paused in place, connect resumes the same sandbox', T, async () => {
  const sbx = await createSandbox({ lifecycle: { onTimeout: 'pause' } })
  try {
    const boot = (await sbx.commands.run('cat /proc/sys/kernel/random/boot_id')).stdout
    const bg = await sbx.commands.run('sleep 3600', { background: true, timeoutMs: 0 })
    await bg.disconnect()
    await sbx.setTimeout(0)
    assert.equal((await Sandbox.getInfo(sbx.sandboxId)).state, 'paused', 'paused when setTimeout(0) returns')
    const again = await Sandbox.connect(sbx.sandboxId)
    assert.equal(again.sandboxId, sbx.sandboxId)
    assert.equal((await again.commands.run('cat /proc/sys/kernel/random/boot_id')).stdout, boot)
    const alive = await again.commands.run(`kill -0 ${bg.pid} && echo alive`)
    assert.equal(alive.stdout.trim(), 'alive', 'the process started before setTimeout(0) still runs: resumed, not re-created')
  } finally {
    await killAll(sbx)
  }
})

test('setTimeout(0) with onTimeout kill: killed before it returns', T, async () => {
  const sbx = await createSandbox()
  try {
    await sbx.setTimeout(0)
    await assert.rejects(Sandbox.getInfo(sbx.sandboxId), gone)
  } finally {
    await killAll(sbx)
  }
})

test('timeouts up to --max-timeout (30 days by default) at create, connect and setTimeout; longer names the limit', T, async () => {
  const sbx = await createSandbox({ timeoutMs: 25 * 3600_000 }) // past the former 24 h cap
  try {
    await sbx.setTimeout(30 * DAY_MS)
    await Sandbox.connect(sbx.sandboxId, { timeoutMs: 30 * DAY_MS })
    const limit = /limit of 2592000 s \(30 days\).*--max-timeout/
    await assert.rejects(sbx.setTimeout(31 * DAY_MS), limit)
    await assert.rejects(Sandbox.connect(sbx.sandboxId, { timeoutMs: 31 * DAY_MS }), limit)
    await assert.rejects(Sandbox.create({ timeoutMs: 31 * DAY_MS }), limit)
  } finally {
    await killAll(sbx)
  }
})

test('commands.run with a relative cwd runs in that directory under the home, as file paths resolve', T, async () => {
  const sbx = await createSandbox()
  try {
    await sbx.files.makeDir('work/sub')
    const r = await sbx.commands.run('pwd', { cwd: 'work/sub' })
    assert.equal(r.stdout.trim(), '/home/user/work/sub')
    assert.equal((await sbx.commands.run('pwd', { cwd: '~/work' })).stdout.trim(), '/home/user/work')
    await sbx.files.makeDir('/root/rwork', { user: 'root' })
    assert.equal((await sbx.commands.run('pwd', { cwd: 'rwork', user: 'root' })).stdout.trim(), '/root/rwork', 'relative to that user\'s home')
    assert.equal((await sbx.commands.run('pwd', { cwd: '/tmp' })).stdout.trim(), '/tmp', 'absolute paths unchanged')
  } finally {
    await killAll(sbx)
  }
})

test('writeFiles with several entries (one multipart request), as the SDK\'s own test: new top-level dirs too', T, async () => {
  const sbx = await createSandbox()
  try {
    // e2b's write.test.ts: even files under a new /N directory (envd creates it for the
    // user), odd ones in the home.
    const files = [...Array(6).keys()].map((i) => ({
      path: i % 2 === 0 ? `/${i}/multi_test_file${i}.txt` : `/home/user/multi_test_file${i}.txt`,
      data: `This is a test file ${i}.`,
    }))
    files.push({ path: 'rel/multi_rel.txt', data: 'relative' }, { path: '~/multi_home.txt', data: new Blob(['blob']) })
    const infos = await sbx.files.writeFiles(files)
    assert.deepEqual(
      infos.map((i) => i.path),
      [...files.slice(0, 6).map((f) => f.path), '/home/user/rel/multi_rel.txt', '/home/user/multi_home.txt'],
    )
    for (const [i, f] of files.slice(0, 6).entries()) assert.equal(await sbx.files.read(f.path), `This is a test file ${i}.`)
    assert.equal(await sbx.files.read('rel/multi_rel.txt'), 'relative')
    assert.equal(await sbx.files.read('multi_home.txt'), 'blob')
    const owner = await sbx.commands.run('stat -c %U /0 /0/multi_test_file0.txt /home/user/rel')
    assert.deepEqual(owner.stdout.trim().split('\n'), ['user', 'user', 'user'], 'what the upload creates belongs to the user')
    // An existing directory keeps its permissions: the file itself is written as the user.
    await assert.rejects(sbx.files.write('/etc/stasis-not-allowed.txt', 'x'))
  } finally {
    await killAll(sbx)
  }
})

test('gzip uploads (files.write / writeFiles with gzip: true, buffered and streamed) are stored decompressed', T, async () => {
  const sbx = await createSandbox()
  try {
    const big = 'stasis '.repeat(200_000) // compresses well: a stored gzip would be far smaller
    await sbx.files.write('gz/one.txt', big, { gzip: true })
    assert.equal(await sbx.files.read('gz/one.txt'), big)
    await sbx.files.writeFiles([{ path: 'gz/a.txt', data: 'a'.repeat(1000) }, { path: 'gz/b.bin', data: new Uint8Array([0, 1, 2, 255]) }], { gzip: true })
    assert.equal(await sbx.files.read('gz/a.txt'), 'a'.repeat(1000))
    assert.deepEqual([...(await sbx.files.read('gz/b.bin', { format: 'bytes' }))], [0, 1, 2, 255])
    const chunks = ['first ', 'second ', 'third']
    const stream = new ReadableStream({ pull(c) { chunks.length ? c.enqueue(new TextEncoder().encode(chunks.shift())) : c.close() } })
    await sbx.files.write('gz/streamed.txt', stream, { gzip: true })
    assert.equal(await sbx.files.read('gz/streamed.txt'), 'first second third')
  } finally {
    await killAll(sbx)
  }
})

test('Sandbox.list query filters: startedAfter (inclusive), template, state, order, with metadata', T, async () => {
  const tag = runTag('filt')
  const made = []
  try {
    const a = await createSandbox({ metadata: { tag } })
    made.push(a)
    await sleep(1100)
    const b = await createSandbox({ metadata: { tag } })
    made.push(b)
    const [ai, bi] = [await a.getInfo(), await b.getInfo()]
    const list = async (query, order) =>
      (await drain(Sandbox.list({ query: { metadata: { tag }, ...query }, order, limit: 1 })))[0].map((s) => s.sandboxId)
    const [A, B] = [a.sandboxId, b.sandboxId]
    assert.deepEqual(await list({ startedAfter: bi.startedAt }), [B], 'at or after b\'s own start')
    assert.deepEqual(await list({ startedAfter: ai.startedAt }), [B, A])
    assert.deepEqual(await list({ startedAfter: ai.startedAt }, 'asc'), [A, B])
    assert.deepEqual(await list({ startedAfter: new Date(bi.startedAt.getTime() + 1) }), [])
    assert.deepEqual(await list({ template: ai.templateId }), [B, A])
    assert.deepEqual(await list({ template: 'no-such-template' }), [])
    assert.equal(await a.pause(), true)
    assert.deepEqual(await list({ state: ['paused'] }), [A])
    assert.deepEqual(await list({ state: ['running', 'paused'], startedAfter: bi.startedAt }), [B])
    assert.deepEqual(await list({ state: ['paused'], startedAfter: bi.startedAt }), [])
  } finally {
    await killAll(made)
  }
})

test('getMetrics with a start/end range returns only the points inside it', T, async () => {
  const sbx = await createSandbox()
  try {
    const now = Date.now()
    assert.ok((await sbx.getMetrics()).length >= 1, 'a point without a range')
    const around = await sbx.getMetrics({ start: new Date(now - 60_000), end: new Date(now + 60_000) })
    assert.ok(around.length >= 1, 'a range around now has the current point')
    for (const p of around) assert.ok(Math.abs(p.timestamp.getTime() - now) <= 61_000, `${p.timestamp.toISOString()} in range`)
    assert.deepEqual(await sbx.getMetrics({ start: new Date(now - 3_600_000), end: new Date(now - 1_800_000) }), [], 'a range in the past')
    assert.deepEqual(await sbx.getMetrics({ start: new Date(now + 600_000) }), [], 'a range in the future')
  } finally {
    await killAll(sbx)
  }
})

test('waiting on a command whose sandbox is killed raises the SDK\'s TimeoutError "killed or reached its end of life"', T, async () => {
  const sbx = await createSandbox()
  try {
    const bg = await sbx.commands.run('sleep 600', { background: true })
    const fg = sbx.commands.run('sleep 600').then(() => 'finished', (e) => e)
    await sleep(1000) // both streams are open
    await Sandbox.kill(sbx.sandboxId)
    const endOfLife = (e) => e instanceof TimeoutError && /sandbox was killed or reached its end of life/.test(e.message)
    await assert.rejects(bg.wait(), endOfLife)
    const e = await fg
    assert.ok(endOfLife(e), `commands.run in flight: ${e}`)
  } finally {
    await killAll(sbx)
  }
})

test('signed file URLs with E2B_SANDBOX_URL: the URL has no sandbox host, so send it with the E2b-Sandbox-Id header', { ...T, skip: HOST_ROUTING && 'not with E2B_SANDBOX_URL' }, async () => {
  const sbx = await createSandbox({ secure: true })
  try {
    await sbx.files.write('hello.txt', 'hello world')
    const url = await sbx.downloadUrl('hello.txt', { useSignatureExpiration: 10_000 })
    assert.ok(url.startsWith(`${process.env.E2B_SANDBOX_URL}/files?`), url)
    const res = await fetch(url, { headers: { 'E2b-Sandbox-Id': sbx.sandboxId } })
    assert.equal(res.status, 200)
    assert.equal(await res.text(), 'hello world')
    const up = await fetch(await sbx.uploadUrl('up.txt'), { method: 'POST', body: new Blob(['up']), headers: { 'E2b-Sandbox-Id': sbx.sandboxId, 'Content-Type': 'application/octet-stream' } })
    assert.equal(up.status, 200)
    assert.equal(await sbx.files.read('up.txt'), 'up')
  } finally {
    await killAll(sbx)
  }
})

test('getMetrics returns the series sampled every 5 s, and a range only its points', T, async () => {
  const sbx = await createSandbox()
  try {
    const t0 = Date.now()
    await sleep(12_000)
    const all = await sbx.getMetrics()
    assert.ok(all.length >= 3, `a series, not one point: ${all.length}`)
    const stamps = all.map((p) => p.timestamp.getTime())
    assert.deepEqual(stamps, [...stamps].sort((a, b) => a - b), 'oldest first')
    const start = new Date(t0 + 2_000), end = new Date(t0 + 9_000)
    const some = await sbx.getMetrics({ start, end })
    assert.ok(some.length >= 1 && some.length < all.length, `${some.length} of ${all.length}`)
    // The JS SDK sends the range in Unix seconds *rounded* (Python's truncates): the
    // server answers every point of the seconds it was sent, both ends included.
    const [s, e] = [Math.round(start.getTime() / 1000), Math.round(end.getTime() / 1000)]
    for (const p of some) {
      const t = Math.floor(p.timestamp.getTime() / 1000)
      assert.ok(t >= s && t <= e, `${p.timestamp.toISOString()} in [${s}, ${e}] (sent for ${start.toISOString()}..${end.toISOString()})`)
    }
    assert.ok(all.every((p) => p.memUsed > 0 && p.memTotal > 0), 'memory sampled')
  } finally {
    await killAll(sbx)
  }
})
