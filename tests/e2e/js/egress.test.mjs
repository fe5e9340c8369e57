// The egress proxy through npm e2b 2.51: a Secret named in network.rules reaches an HTTPS
// server as the rule's header, set outside the sandbox, while the sandbox never holds the
// value. The server is tests/e2e/egress/echo.sh (a namespace of its own, its CA given to
// `stasis serve` with --egress-extra-root); it answers with a SHA-256 of the header.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { Secret } from 'e2b'
import { createSandbox, killAll, runTag } from './helpers.mjs'

const T = { timeout: 300_000 }
const { E2E_EGRESS_ADDR: ADDR, E2E_EGRESS_CIDR: CIDR, E2E_EGRESS_CA: CA } = process.env
const sha = (s) => createHash('sha256').update(s).digest('hex')

// The client the sandbox runs (tests/e2e/egress/client.py): a GET of https://NAME/ sent
// to the echo's address, verified against the sandbox's system bundle, or CAFILE.
const CLIENT = readFileSync(new URL('../egress/client.py', import.meta.url), 'utf8')

async function get(sbx, name, cafile = '') {
  const r = await sbx.commands.run(`python3 /tmp/client.py ${name} ${ADDR} ${cafile}`)
  return JSON.parse(r.stdout)
}

test('a Secret in network.rules reaches HTTPS as a header set outside the sandbox, across update and pause', T, async (t) => {
  if (!ADDR) return t.skip('no egress echo (tests/e2e/run.sh starts it)')
  const name = runTag('jsegress')
  const [first, second] = [`jsv1-${name}`, `jsv2-${name}`]
  await Secret.create(name, first)
  let sbx
  try {
    sbx = await createSandbox({
      network: {
        allowOut: [CIDR],
        rules: { 'api.egress.test': [{ transform: { headers: { 'X-Api-Key': `Key ${Secret.fill(name)}` } } }] },
      },
    })
    await sbx.files.write('/tmp/client.py', CLIENT)
    await sbx.files.write('/tmp/test-ca.pem', readFileSync(CA, 'utf8'))

    let got = await get(sbx, 'api.egress.test')
    assert.equal(got.issuer, 'Stasis sandbox egress CA', JSON.stringify(got))
    assert.equal(got.body.key_sha256, sha(`Key ${first}`), 'the rule replaced the sandbox\'s own header')
    assert.equal(got.body.mine, 'kept', 'the sandbox\'s other headers pass')
    // A name no rule matches passes untouched: the server's own certificate.
    got = await get(sbx, 'plain.egress.test', '/tmp/test-ca.pem')
    assert.equal(got.issuer, 'Stasis e2e egress test CA', JSON.stringify(got))
    assert.equal(got.body.key_sha256, sha('sandbox-own'))

    await Secret.update(name, second)
    await sbx.pause()
    await sbx.connect()
    got = await get(sbx, 'api.egress.test')
    assert.equal(got.body.key_sha256, sha(`Key ${second}`), 'the new value, after the pause')

    // Never inside: not in its environment, not in its files.
    const inside = await sbx.commands.run(
      `{ env; cat /proc/1/environ; grep -rl -e ${first} -e ${second} /etc /tmp /home /root 2>/dev/null; } | grep -c -e ${first} -e ${second} || true`,
      { user: 'root' })
    assert.equal(inside.stdout.trim(), '0')
  } finally {
    if (sbx) await killAll(sbx.sandboxId)
    await Secret.destroy(name)
  }
})
