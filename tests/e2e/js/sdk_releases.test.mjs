// Issue 14: users pin SDK versions, so older npm `e2b` releases must work too, not only
// the current one. One release from each stretch of the past year's 2.x line (package.json
// installs them under aliases: `e2b-2.3.4` is `npm:e2b@2.3.4`), each through the same user
// story with its own defaults (every one of them creates `secure: true` sandboxes):
// create, a command, a file written and read, a user port answering through the proxy
// without the traffic token (`secure` guards the agent, not the user's ports), pause
// (`betaPause` before `pause` existed) and `connect` with the files, the process and the
// port still there, and kill, in host-routing mode. docs/sdk-parity.md ("Older SDK releases") lists them.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { killAll, seen, useHostRouting, waitFor } from './helpers.mjs'

// Host routing (`E2B_DOMAIN`, `https://{port}-{id}.{domain}` on run.sh's TLS listener):
// how these releases reach a self-hosted server. 2.3 has no `E2B_SANDBOX_URL` at all, and
// up to 2.10 the file calls do not carry the sandbox headers that mode needs.
await useHostRouting()

const T = { timeout: 180_000 }
export const RELEASES = (process.env.E2E_RELEASES || '2.3.4,2.10.4,2.19.5,2.28.2,2.38.3,2.46.1').split(',')

/** A GET to a user port of the sandbox through the API listener's proxy (no token). */
async function port(id, p, path) {
  const r = await fetch(`${process.env.E2B_API_URL}${path}`, {
    headers: { 'E2b-Sandbox-Id': id, 'E2b-Sandbox-Port': String(p) },
  })
  return [r.status, await r.text()]
}

for (const version of RELEASES) {
  test(`npm e2b ${version}: create (secure by default), run, files, a user port, pause + connect, kill`, T, async () => {
    const { Sandbox } = await import(`e2b-${version}`)
    const sbx = await Sandbox.create({ timeoutMs: 120_000, requestTimeoutMs: 60_000 })
    seen(sbx.sandboxId)
    try {
      const info = await Sandbox.getInfo(sbx.sandboxId)
      assert.equal(info.sandboxId, sbx.sandboxId)
      assert.equal((await sbx.commands.run('echo hi-$((6*7)) $(id -un)')).stdout, 'hi-42 user\n')
      await sbx.files.write('/home/user/www/release.txt', version)
      assert.equal(await sbx.files.read('/home/user/www/release.txt'), version)

      const server = await sbx.commands.run('python3 -m http.server 8000 --directory /home/user/www', { background: true })
      await waitFor('the user port', async () => (await port(sbx.sandboxId, 8000, '/release.txt'))[0] === 200)
      assert.deepEqual(await port(sbx.sandboxId, 8000, '/release.txt'), [200, version])

      const pause = typeof sbx.pause === 'function' ? sbx.pause : sbx.betaPause
      await pause.call(sbx)
      assert.equal((await Sandbox.getInfo(sbx.sandboxId)).state, 'paused')
      const back = await Sandbox.connect(sbx.sandboxId, { timeoutMs: 120_000 })
      assert.equal(await back.files.read('/home/user/www/release.txt'), version)
      assert.ok((await back.commands.list()).some((p) => p.pid === server.pid), 'the server process survived the pause')
      assert.deepEqual(await port(sbx.sandboxId, 8000, '/release.txt'), [200, version], 'and still answers')

      assert.equal(await Sandbox.kill(sbx.sandboxId), true)
      await assert.rejects(Sandbox.getInfo(sbx.sandboxId), /not found/i)
    } finally {
      await killAll(sbx.sandboxId)
    }
  })
}

test('npm e2b (current): network.allowPublicTraffic false makes the user ports take the traffic token; secure alone does not', T, async () => {
  const { Sandbox } = await import('e2b')
  const open = await Sandbox.create({ secure: true, timeoutMs: 120_000 })
  const closed = await Sandbox.create({ network: { allowPublicTraffic: false }, timeoutMs: 120_000 })
  seen(open.sandboxId)
  seen(closed.sandboxId)
  try {
    assert.equal(open.trafficAccessToken, undefined)
    assert.ok(closed.trafficAccessToken, 'a sandbox closed to public traffic gets a traffic token')
    assert.equal((await Sandbox.getInfo(closed.sandboxId)).network?.allowPublicTraffic, false)
    for (const sbx of [open, closed]) {
      await sbx.files.write('/home/user/www/who.txt', sbx.sandboxId)
      await sbx.commands.run('python3 -m http.server 8000 --directory /home/user/www', { background: true })
    }
    await waitFor('the open port', async () => (await port(open.sandboxId, 8000, '/who.txt'))[0] === 200)
    const [status, body] = await port(closed.sandboxId, 8000, '/who.txt')
    assert.equal(status, 403, body)
    assert.match(body, /traffic access token/)
    await waitFor('the closed port with its token', async () => {
      const r = await fetch(`${process.env.E2B_API_URL}/who.txt`, {
        headers: { 'E2b-Sandbox-Id': closed.sandboxId, 'E2b-Sandbox-Port': '8000', 'e2b-traffic-access-token': closed.trafficAccessToken },
      })
      return r.status === 200 && (await r.text()) === closed.sandboxId
    })
  } finally {
    await killAll(open.sandboxId, closed.sandboxId)
  }
})
