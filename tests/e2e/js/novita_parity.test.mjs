// Issue 14, Novita's own methods (npm novita-sandbox 2.1.1) on top of the e2b protocol.
// docs/sdk-parity.md maps each method to the test here that proves it.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Sandbox } from 'novita-sandbox'
import { killAll, seen, waitFor } from './helpers.mjs'

const T = { timeout: 180_000 }

test('Sandbox.clone(id, { count }) makes running copies: files, processes and memory continue in each; the source runs on', T, async () => {
  const src = await Sandbox.create({ timeoutMs: 300_000 })
  seen(src.sandboxId)
  const made = [src]
  try {
    await src.files.write('clone.txt', 'from the source')
    const counter = await src.commands.run('python3 -c "import time\nn=0\nwhile True:\n  n+=1\n  open(\'/tmp/n\',\'w\').write(str(n))\n  time.sleep(0.05)"', { background: true })
    await new Promise((r) => setTimeout(r, 500))
    const res = await Sandbox.clone(src.sandboxId, { count: 2 })
    made.push(...res.sandboxes)
    for (const c of res.sandboxes) seen(c.sandboxId)
    assert.equal(res.count, 2)
    assert.equal(new Set([src.sandboxId, ...res.sandboxes.map((c) => c.sandboxId)]).size, 3, 'new ids')
    for (const c of res.sandboxes) {
      assert.equal(await c.files.read('clone.txt'), 'from the source')
      const alive = await c.commands.run(`kill -0 ${counter.pid} && cat /tmp/n`)
      const n1 = Number(alive.stdout)
      // It counts every 50 ms; a loaded host may take longer to fault its pages back in.
      const counts = await waitFor('the clone\'s counter to move', async () =>
        Number((await c.commands.run('cat /tmp/n')).stdout) > n1, 10_000, 100).catch(() => false)
      assert.ok(counts, 'the process keeps counting in the clone')
      await c.files.write('clone.txt', `clone ${c.sandboxId}`)
    }
    assert.equal(await src.files.read('clone.txt'), 'from the source', 'each copy is its own')
    assert.equal((await Sandbox.getInfo(src.sandboxId)).state, 'running')
    await assert.rejects(Sandbox.clone(src.sandboxId, { count: 0 }), /count must be between 1 and 20/)
  } finally {
    await killAll(made.map((s) => s.sandboxId))
  }
})

test('reset: back to the template state, same id and tokens; { resume: false } leaves it paused', T, async () => {
  const sbx = await Sandbox.create({ timeoutMs: 300_000 })
  seen(sbx.sandboxId)
  try {
    await sbx.files.write('reset.txt', 'before')
    const bg = await sbx.commands.run('sleep 3600', { background: true })
    assert.equal(await sbx.reset(), true)
    assert.equal(await sbx.files.exists('reset.txt'), false, 'the files are the template\'s again')
    const ps = await sbx.commands.list()
    assert.ok(!ps.some((p) => p.pid === bg.pid && p.cmd.includes('sleep')), 'the processes are gone')
    assert.equal((await sbx.commands.run('echo again')).stdout, 'again\n', 'the same Sandbox object works on')
    assert.equal((await Sandbox.getInfo(sbx.sandboxId)).state, 'running')

    await sbx.files.write('reset.txt', 'second')
    assert.equal(await Sandbox.reset(sbx.sandboxId, { resume: false }), true)
    assert.equal((await Sandbox.getInfo(sbx.sandboxId)).state, 'paused')
    const back = await Sandbox.connect(sbx.sandboxId)
    assert.equal(await back.files.exists('reset.txt'), false)
  } finally {
    await killAll(sbx.sandboxId)
  }
})
