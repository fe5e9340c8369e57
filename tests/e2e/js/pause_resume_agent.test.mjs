// Issue 3 #3: the agent keeps serving correctly after its sandbox is paused and resumed:
// a background process started before the pause can be connected to afterwards and its
// output produced after the resume arrives; the process list is the same.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { Sandbox } from 'e2b'
import { createSandbox, killAll, runTag, waitFor, sleep } from './helpers.mjs'

const T = { timeout: 180_000 }
const norm = (list) =>
  list
    .map((p) => ({ pid: p.pid, tag: p.tag ?? null, cmd: p.cmd, args: p.args, cwd: p.cwd ?? null, envs: p.envs ?? {} }))
    .sort((a, b) => a.pid - b.pid)

test('background processes started before a pause keep running and can be connected to after resume', T, async () => {
  const sbx = await createSandbox({ metadata: { suite: 'pause_resume_agent', tag: runTag('pr') } })
  try {
    // 1. waits for /tmp/go, then prints its content (output produced only after the resume);
    // 2. echoes its stdin back; 3. a plain sleep.
    const waiter = await sbx.commands.run('while [ ! -f /tmp/go ]; do sleep 0.05; done; echo "after-resume:$(cat /tmp/go)"; sleep 3600',
      { background: true, timeoutMs: 0 })
    const echo = await sbx.commands.run('while IFS= read -r l; do echo "echo:$l"; done', { background: true, stdin: true, timeoutMs: 0, cwd: '/tmp', envs: { E2E_MARK: 'x' } })
    const sleeper = await sbx.commands.run('sleep 3600', { background: true, timeoutMs: 0 })
    const bootBefore = (await sbx.commands.run('cat /proc/sys/kernel/random/boot_id')).stdout
    const before = norm(await sbx.commands.list())
    for (const h of [waiter, echo, sleeper]) assert.ok(before.some((p) => p.pid === h.pid), `pid ${h.pid} listed before the pause`)
    for (const h of [waiter, echo, sleeper]) await h.disconnect()

    assert.equal(await sbx.pause(), true)
    assert.equal(await sbx.isRunning(), false)
    await sleep(500)
    const again = await Sandbox.connect(sbx.sandboxId)
    assert.equal(await again.isRunning(), true)

    const after = norm(await again.commands.list())
    assert.deepEqual(after, before, 'the process list is the same after resume')
    assert.equal((await again.commands.run('cat /proc/sys/kernel/random/boot_id')).stdout, bootBefore, 'a memory resume is the same boot')

    // Connect to the waiter, then make it print: the output is produced after the resume.
    const got = []
    const w2 = await again.commands.connect(waiter.pid, { onStdout: (d) => got.push(d), timeoutMs: 0 })
    const nonce = randomBytes(8).toString('hex')
    await again.files.write('/tmp/go', nonce)
    await waitFor('output produced after the resume', () => got.join('').includes(`after-resume:${nonce}\n`))

    // The stdin reader still reads stdin and its output arrives.
    const echoed = []
    const e2 = await again.commands.connect(echo.pid, { onStdout: (d) => echoed.push(d), timeoutMs: 0 })
    await again.commands.sendStdin(echo.pid, 'ping\n')
    await waitFor('stdin echo after resume', () => echoed.join('').includes('echo:ping\n'))

    // And they can still be killed; the end reaches the connected handle.
    assert.equal(await again.commands.kill(echo.pid), true)
    const end = await e2.wait().then(() => 'exited 0', (e) => `${e.constructor.name}:${e.exitCode}`)
    assert.equal(end, 'CommandExitError:-1', 'killed by signal')
    assert.equal(await again.commands.kill(waiter.pid), true)
    await w2.wait().catch(() => {})
    await waitFor('killed processes gone', async () => {
      const pids = (await again.commands.list()).map((p) => p.pid)
      return !pids.includes(echo.pid) && !pids.includes(waiter.pid) && pids.includes(sleeper.pid)
    })
  } finally {
    await killAll(sbx)
  }
})

test('a command streaming across a pause: connect after resume gets the output produced after it', T, async () => {
  const sbx = await createSandbox({ metadata: { suite: 'pause_resume_agent', tag: runTag('pr2') } })
  try {
    const seen = []
    const ticker = await sbx.commands.run('i=0; while true; do i=$((i+1)); echo "tick $i $(date +%s%N)"; sleep 0.1; done',
      { background: true, timeoutMs: 0, onStdout: (d) => seen.push(d) })
    await waitFor('ticks before the pause', () => seen.join('').includes('tick 3 '))
    await ticker.disconnect()

    assert.equal(await Sandbox.pause(sbx.sandboxId), true)
    const pausedAt = Date.now()
    await sleep(700)
    const resumedAt = Date.now()
    const again = await Sandbox.connect(sbx.sandboxId)
    const post = []
    const h2 = await again.commands.connect(ticker.pid, { onStdout: (d) => post.push(d), timeoutMs: 0 })
    // Lines produced after the resume: timestamps later than the moment we resumed.
    await waitFor('a tick produced after the resume', () =>
      post.join('').split('\n').some((l) => {
        const m = l.match(/^tick (\d+) (\d+)$/)
        return m && Number(BigInt(m[2]) / 1_000_000n) > resumedAt
      }))
    // While paused the process was frozen: no tick is stamped inside the paused window.
    const during = post.join('').split('\n').filter((l) => {
      const m = l.match(/^tick (\d+) (\d+)$/)
      if (!m) return false
      const ms = Number(BigInt(m[2]) / 1_000_000n)
      return ms > pausedAt + 200 && ms < resumedAt - 200
    })
    assert.deepEqual(during, [], 'nothing ran while paused')
    await h2.disconnect()
  } finally {
    await killAll(sbx)
  }
})
