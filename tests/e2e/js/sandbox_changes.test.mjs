// Changes to a running sandbox through the SDKs: Novita's hotplugMemory (the limit
// raised in place: a program that needed more runs after it) and the network update that
// both SDKs send (`PUT /sandboxes/{id}/network`: e2b's updateNetwork, Novita's
// setNetwork). That the gateway's rules change is proven with real traffic by
// crates/stasis/tests/hardening_network.rs (a server in a network namespace); here, the
// SDKs' wire and errors. docs/sdk-parity.md lists both.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Sandbox as E2B } from 'e2b'
import { Sandbox as Novita } from 'novita-sandbox'
import { killAll, seen } from './helpers.mjs'

const T = { timeout: 180_000 }
const allocate = (mib) => `python3 -c "s = 'x' * (${mib} << 20); print('allocated', len(s) >> 20)" 2>/dev/null || echo killed`

test('novita hotplugMemory: a program that needed more memory runs after the raise, in the same sandbox, after a resume and in a copy', T, async () => {
  const sbx = await Novita.create({ timeoutMs: 300_000 })
  seen(sbx.sandboxId)
  const made = [sbx.sandboxId]
  try {
    const before = (await Novita.getInfo(sbx.sandboxId)).memoryMB
    const need = before + 128
    assert.equal((await sbx.commands.run(allocate(need))).stdout.trim(), 'killed', `${before} MiB cannot hold ${need} MiB`)
    await sbx.hotplugMemory(before * 2)
    assert.equal((await sbx.commands.run(allocate(need))).stdout.trim(), `allocated ${need}`)
    assert.equal((await Novita.getInfo(sbx.sandboxId)).memoryMB, before * 2)
    const full = await Novita.getFullInfo(sbx.sandboxId)
    assert.equal(full.sandboxId, sbx.sandboxId, 'getFullInfo: the same info, unparsed fields kept')
    assert.equal(full.memoryMB, before * 2)
    await sbx.pause()
    const back = await Novita.connect(sbx.sandboxId)
    assert.equal((await back.commands.run(allocate(need))).stdout.trim(), `allocated ${need}`, 'kept across pause and resume')
    await assert.rejects(Novita.hotplugMemory(sbx.sandboxId, before), /memory can only grow/)
    await assert.rejects(Novita.hotplugMemory('nosuchsandbox0000000', 4096), (e) => e.name === 'SandboxNotFoundError')
    // A copy made from a snapshot runs with the memory its source had (its processes were
    // sized for it), and getInfo says so.
    const snap = await E2B.createSnapshot(sbx.sandboxId)
    const copy = await E2B.create(snap.snapshotId, { timeoutMs: 120_000 })
    made.push(copy.sandboxId)
    seen(copy.sandboxId)
    assert.equal((await E2B.getInfo(copy.sandboxId)).memoryMB, before * 2)
    assert.equal((await copy.commands.run(allocate(need))).stdout.trim(), `allocated ${need}`)
    await E2B.deleteSnapshot(snap.snapshotId)
  } finally {
    await killAll(made)
  }
})

test('updateNetwork (e2b) and setNetwork (novita): accepted for a running and a paused sandbox, refused with a clear error for what Stasis cannot do', T, async () => {
  const sbx = await E2B.create({ timeoutMs: 300_000 })
  seen(sbx.sandboxId)
  try {
    await sbx.updateNetwork({ allowOut: ['10.1.2.0/24'], denyOut: ['0.0.0.0/0'] })
    assert.equal((await sbx.commands.run('echo still here')).stdout, 'still here\n', 'the sandbox runs on')
    const net = (await E2B.getInfo(sbx.sandboxId)).network
    assert.deepEqual([net.allowOut, net.denyOut], [['10.1.2.0/24'], ['0.0.0.0/0']], 'getInfo shows the rules in force')
    await Novita.setNetwork(sbx.sandboxId, { allowOut: ['10.1.3.4'] })
    await sbx.pause()
    await E2B.updateNetwork(sbx.sandboxId, { denyOut: ['10.0.0.0/8'] })
    const back = await E2B.connect(sbx.sandboxId)
    const after = (await E2B.getInfo(sbx.sandboxId)).network
    assert.deepEqual([after.allowOut, after.denyOut], [[], ['10.0.0.0/8']], 'each update replaces the whole policy, kept across resume')
    assert.equal((await back.commands.run('echo resumed')).stdout, 'resumed\n')
    await assert.rejects(sbx.updateNetwork({ allowOut: ['example.com'] }), /not an IPv4 address or CIDR/)
    await assert.rejects(sbx.updateNetwork({ rules: { 'api.example.com': [{ transform: { headers: { 'X-Key': '${e2b.secrets.nosuchsecret}' } } }] } }), /names the secret "nosuchsecret", which does not exist/)
    await assert.rejects(E2B.updateNetwork('nosuchsandbox0000000', {}), /not found/i)
  } finally {
    await killAll(sbx.sandboxId)
  }
})
