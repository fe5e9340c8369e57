// Issue 4: the lifecycle flow with npm e2b 2.51 (create with metadata and env vars, pause,
// connect, list, kill) and its error cases.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Sandbox, NotFoundError, SandboxNotFoundError } from 'e2b'
import { createSandbox, drain, killAll, runTag, sleep } from './helpers.mjs'

const T = { timeout: 180_000 }

const isSleep = (p) => [p.cmd, ...(p.args ?? [])].join(' ').includes('sleep 3600')

test('create with metadata + envs, pause, connect: isRunning, background process and env vars survive', T, async () => {
  const tag = runTag('life')
  const sbx = await createSandbox({ metadata: { suite: 'lifecycle', tag }, envs: { STASIS_E2E_VAR: 'value with spaces & =' } })
  try {
    assert.match(sbx.sandboxId, /^[a-z0-9]+$/)
    assert.equal(await sbx.isRunning(), true)
    const info = await sbx.getInfo()
    assert.equal(info.state, 'running')
    assert.deepEqual(info.metadata, { suite: 'lifecycle', tag })

    const env = await sbx.commands.run('printf %s "$STASIS_E2E_VAR"')
    assert.equal(env.stdout, 'value with spaces & =')

    const bg = await sbx.commands.run('sleep 3600', { background: true, timeoutMs: 0 })
    assert.ok(bg.pid > 0)
    const before = await sbx.commands.list()
    assert.ok(before.some((p) => p.pid === bg.pid && isSleep(p)), `sleep listed before pause: ${JSON.stringify(before)}`)
    await bg.disconnect()

    assert.equal(await sbx.pause(), true, 'pause of a running sandbox returns true')
    assert.equal(await sbx.isRunning(), false, 'isRunning() is false while paused')
    assert.equal((await Sandbox.getInfo(sbx.sandboxId)).state, 'paused')

    const again = await Sandbox.connect(sbx.sandboxId, { timeoutMs: 300_000 })
    assert.equal(again.sandboxId, sbx.sandboxId)
    assert.equal(await again.isRunning(), true, 'running after connect')
    assert.equal((await Sandbox.getInfo(sbx.sandboxId)).state, 'running')

    const after = await again.commands.list()
    assert.ok(after.some((p) => p.pid === bg.pid && isSleep(p)), `sleep 3600 started before the pause is listed after connect: ${JSON.stringify(after)}`)

    const env2 = await again.commands.run('printf %s "$STASIS_E2E_VAR"')
    assert.equal(env2.stdout, 'value with spaces & =', 'env vars given at create are still set after resume')
    assert.deepEqual((await again.getInfo()).metadata, { suite: 'lifecycle', tag }, 'metadata survives pause/resume')
  } finally {
    await killAll(sbx)
  }
})

test('list with limit 1 across a running and a paused sandbox: each exactly once, newest first', T, async () => {
  const tag = runTag('page')
  const made = []
  try {
    const older = await createSandbox({ metadata: { tag } })
    made.push(older)
    await sleep(1100) // distinct startedAt even at one-second resolution
    const newer = await createSandbox({ metadata: { tag } })
    made.push(newer)
    assert.equal(await older.pause(), true)

    const [items, pages] = await drain(Sandbox.list({ limit: 1, query: { metadata: { tag } } }))
    const ids = items.map((i) => i.sandboxId)
    assert.deepEqual(ids, [newer.sandboxId, older.sandboxId], `newest first, each once: ${JSON.stringify(items)}`)
    assert.ok(pages >= 2 && pages <= 3, `limit 1 gives one sandbox a page (${pages} pages)`)
    assert.deepEqual(items.map((i) => i.state), ['running', 'paused'])
    assert.ok(items[0].startedAt >= items[1].startedAt)
    for (const i of items) assert.deepEqual(i.metadata, { tag })

    // The state filter, paginated too.
    const [paused] = await drain(Sandbox.list({ limit: 1, query: { state: ['paused'], metadata: { tag } } }))
    assert.deepEqual(paused.map((i) => i.sandboxId), [older.sandboxId])
    const [running] = await drain(Sandbox.list({ limit: 1, query: { state: ['running'], metadata: { tag } } }))
    assert.deepEqual(running.map((i) => i.sandboxId), [newer.sandboxId])
    const [both] = await drain(Sandbox.list({ limit: 1, query: { state: ['running', 'paused'], metadata: { tag } } }))
    assert.deepEqual(both.map((i) => i.sandboxId), [newer.sandboxId, older.sandboxId])
  } finally {
    await killAll(made)
  }
})

test('metadata filters with spaces, & and = in keys and values', T, async () => {
  const tag = runTag('meta')
  const odd = { 'key with space': 'value with space', 'a&b': 'c=d', 'x=y': 'p&q', 'both & =': 'v & w = z' }
  const made = []
  try {
    const target = await createSandbox({ metadata: { tag, ...odd } })
    made.push(target)
    // A decoy whose values are prefixes or pieces of the target's: a filter must match exactly.
    const decoy = await createSandbox({ metadata: { tag, 'key with space': 'value', 'a&b': 'c', 'x': 'y=p&q', 'both & =': 'v & w' } })
    made.push(decoy)

    assert.deepEqual((await target.getInfo()).metadata, { tag, ...odd }, 'metadata round-trips')
    const ids = async (metadata) => (await drain(Sandbox.list({ query: { metadata } })))[0].map((i) => i.sandboxId).sort()

    for (const [k, v] of Object.entries(odd)) {
      assert.deepEqual(await ids({ tag, [k]: v }), [target.sandboxId], `filter ${JSON.stringify({ [k]: v })}`)
    }
    assert.deepEqual(await ids({ tag, ...odd }), [target.sandboxId], 'all filters ANDed')
    assert.deepEqual(await ids({ tag }), [target.sandboxId, decoy.sandboxId].sort(), 'tag alone matches both')
    assert.deepEqual(await ids({ tag, 'a&b': 'c' }), [decoy.sandboxId], 'a&b=c matches only the decoy')
    assert.deepEqual(await ids({ tag, 'x': 'y=p&q' }), [decoy.sandboxId])
    assert.deepEqual(await ids({ tag, 'a&b': 'nope' }), [], 'a filter that matches nothing returns nothing')
    assert.deepEqual(await ids({ tag, 'key with space': 'value with space', 'a&b': 'c' }), [], 'AND across sandboxes matches none')
  } finally {
    await killAll(made)
  }
})

test('kill of a paused sandbox, then connect gives the SDK not-found error', T, async () => {
  const tag = runTag('kill')
  const sbx = await createSandbox({ metadata: { tag } })
  try {
    assert.equal(await sbx.pause(), true)
    assert.equal(await Sandbox.kill(sbx.sandboxId), true, 'kill of a paused sandbox returns true')
    await assert.rejects(Sandbox.connect(sbx.sandboxId), (e) => {
      assert.ok(e instanceof NotFoundError, `NotFoundError, got ${e?.constructor?.name}: ${e}`)
      assert.ok(e instanceof SandboxNotFoundError, `SandboxNotFoundError, got ${e?.constructor?.name}`)
      return true
    })
    await assert.rejects(Sandbox.getInfo(sbx.sandboxId), SandboxNotFoundError)
    assert.equal(await Sandbox.kill(sbx.sandboxId), false, 'kill of a gone sandbox returns false')
    const [left] = await drain(Sandbox.list({ query: { metadata: { tag } } }))
    assert.deepEqual(left, [], 'a killed sandbox is not listed')
  } finally {
    await killAll(sbx)
  }
})

test('pause of an already paused sandbox returns false (409), and it stays paused', T, async () => {
  const sbx = await createSandbox({ metadata: { tag: runTag('pp') } })
  try {
    assert.equal(await sbx.pause(), true)
    assert.equal(await sbx.pause(), false, 'instance pause of a paused sandbox returns false')
    assert.equal(await Sandbox.pause(sbx.sandboxId), false, 'static pause of a paused sandbox returns false')
    assert.equal((await Sandbox.getInfo(sbx.sandboxId)).state, 'paused')
    await assert.rejects(Sandbox.pause('doesnotexist0000000000'), SandboxNotFoundError, 'pause of an unknown sandbox')
    // Still resumable after the refused pauses.
    const again = await Sandbox.connect(sbx.sandboxId)
    assert.equal((await again.commands.run('echo ok')).stdout, 'ok\n')
  } finally {
    await killAll(sbx)
  }
})
