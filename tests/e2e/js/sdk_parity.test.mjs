// Issue 14: SDK parity with npm e2b 2.51: setTimeout(0) and --max-timeout, relative
// command cwd, multi-file and gzip uploads, list filters, the metrics range.
// docs/sdk-parity.md maps each method/option to the test here that proves it.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Sandbox, NotFoundError, SandboxNotFoundError } from 'e2b'
import { createSandbox, drain, killAll, runTag, sleep } from './helpers.mjs'

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
