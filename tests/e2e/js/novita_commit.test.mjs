// Novita's Sandbox.commit(id, { alias }) (npm novita-sandbox 2.1.1): a running sandbox
// becomes a template named alias; a sandbox created from it has the file written before
// the commit and the committed sandbox's processes (the capture holds memory); a paused
// sandbox can be committed too (it is paused again after). The SDK sends commit only on
// its legacy domains, so the call names one while its apiUrl stays the loopback server.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Sandbox } from 'novita-sandbox'
import { killAll, runTag, seen } from './helpers.mjs'

const T = { timeout: 180_000 }
const LEGACY = { domain: 'sandbox.novita.ai', apiUrl: process.env.NOVITA_API_URL }

test('Sandbox.commit: the alias is a template with the files and the running processes', T, async () => {
  const src = await Sandbox.create({ timeoutMs: 300_000 })
  seen(src.sandboxId)
  const made = [src.sandboxId]
  const alias = runTag('committed')
  try {
    await src.files.write('/home/user/before-commit.txt', 'written before the commit')
    const counter = await src.commands.run('sh -c "echo \\$\\$ > /tmp/pid; while true; do sleep 0.1; done"', { background: true })
    const info = await Sandbox.commit(src.sandboxId, { alias, ...LEGACY })
    assert.ok(info.aliases.includes(alias), JSON.stringify(info))
    assert.equal(info.templateType, 'snapshot_template')
    assert.equal(info.buildStatus, 'ready')

    const fromIt = await Sandbox.create(alias, { timeoutMs: 120_000 })
    seen(fromIt.sandboxId)
    made.push(fromIt.sandboxId)
    assert.equal(await fromIt.files.read('/home/user/before-commit.txt'), 'written before the commit')
    const alive = await fromIt.commands.run(`kill -0 ${counter.pid} && echo alive`)
    assert.equal(alive.stdout, 'alive\n', 'the committed process runs on in the new sandbox')
    await fromIt.files.write('/home/user/before-commit.txt', 'changed in the copy')
    assert.equal(await src.files.read('/home/user/before-commit.txt'), 'written before the commit')

    // A paused sandbox: committed, and left paused.
    await src.files.write('/home/user/paused.txt', 'written before the pause')
    await src.pause()
    const again = await Sandbox.commit(src.sandboxId, { alias: `${alias}-p`, ...LEGACY })
    assert.ok(again.aliases.includes(`${alias}-p`))
    assert.equal((await Sandbox.getInfo(src.sandboxId)).state, 'paused')
    const fromPaused = await Sandbox.create(`${alias}-p`, { timeoutMs: 120_000 })
    seen(fromPaused.sandboxId)
    made.push(fromPaused.sandboxId)
    assert.equal(await fromPaused.files.read('/home/user/paused.txt'), 'written before the pause')

    await assert.rejects(Sandbox.commit('nosuchsandbox', { alias: 'x', ...LEGACY }), /not found/)
  } finally {
    await killAll(made)
    for (const a of [alias, `${alias}-p`]) await Sandbox.deleteSnapshot(a).catch(() => {})
  }
})
