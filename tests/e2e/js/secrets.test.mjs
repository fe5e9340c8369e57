// Secrets with npm e2b 2.51: Secret.create / getInfo / exists / update / list / destroy,
// Secret.fill, and network.rules naming secrets at Sandbox.create and in updateNetwork.
// Values are write-only: no answer of the API carries one.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Sandbox, Secret, SecretError, SecretNotFoundError } from 'e2b'
import { createSandbox, drain, killAll, runTag } from './helpers.mjs'

const T = { timeout: 300_000 }
const VALUE = 'sk-js-' + 'v'.repeat(24)

async function rawGet(path) {
  const r = await fetch(process.env.E2B_API_URL + path, { headers: { 'X-API-Key': process.env.E2B_API_KEY } })
  return [r.status, await r.text()]
}

test('Secret: create, getInfo, exists, update, list, destroy, never reading a value', T, async () => {
  const name = runTag('jssec')
  const others = []
  try {
    const info = await Secret.create(name.toUpperCase(), VALUE, { metadata: { env: 'test' } })
    assert.match(info.secretId, /^sec_/)
    assert.equal(info.name, name, 'names are stored lower-cased')
    assert.equal(info.version, 1)
    assert.deepEqual(info.metadata, { env: 'test' })
    assert.ok(info.createdAt instanceof Date)
    assert.equal(info.value, undefined)

    assert.equal((await Secret.getInfo(info.secretId)).name, name)
    assert.equal((await Secret.getInfo(name)).secretId, info.secretId)
    assert.equal(await Secret.exists(name), true)
    assert.equal(await Secret.exists(`${name}-missing`), false)
    await assert.rejects(Secret.getInfo(`${name}-missing`), SecretNotFoundError)
    await assert.rejects(Secret.update(`${name}-missing`, 'x'), SecretNotFoundError)

    await assert.rejects(Secret.create(name, 'other'), (e) => e instanceof SecretError && /already exists/.test(e.message))
    for (const bad of ['a{b', `sec_${name}`]) await assert.rejects(Secret.create(bad, 'x'))
    await assert.rejects(Secret.create(`${name}-2`, 'a\r\nX-Injected: 1'), /control characters/)

    let u = await Secret.update(name, VALUE + '-2')
    assert.equal(u.secretId, info.secretId)
    assert.equal(u.version, 2)
    assert.deepEqual(u.metadata, { env: 'test' })
    u = await Secret.update(info.secretId, VALUE + '-3', { metadata: { env: 'prod' } })
    assert.equal(u.version, 3)
    assert.deepEqual(u.metadata, { env: 'prod' })

    for (const i of [0, 1]) others.push(await Secret.create(`${name}-${i}`, VALUE))
    const [items, pages] = await drain(Secret.list({ limit: 1 }))
    const mine = items.filter((s) => s.name.startsWith(name)).map((s) => s.name).sort()
    assert.deepEqual(mine, [name, `${name}-0`, `${name}-1`])
    assert.ok(pages >= 3)
    for (const path of ['/secrets', '/secrets?limit=1', `/secrets/${info.secretId}`, `/secrets/${name}`]) {
      const [status, text] = await rawGet(path)
      assert.equal(status, 200)
      assert.ok(!text.includes(VALUE) && !text.includes('value'), `${path}: ${text}`)
    }

    assert.equal(await Secret.destroy(info.secretId), true)
    assert.equal(await Secret.destroy(name), false)
    assert.equal(await Secret.exists(info.secretId), false)
  } finally {
    for (const o of others) await Secret.destroy(o.secretId)
    await Secret.destroy(name).catch(() => {})
  }
})

test('Secret.fill formats the placeholder', () => {
  assert.equal(Secret.fill('openai'), '${e2b.secrets.openai}')
})

test('network.rules name existing secrets, are kept and shown as sent, replaced by updateNetwork', T, async () => {
  const name = runTag('jssec')
  const made = []
  try {
    await Secret.create(name, VALUE)
    const header = { Authorization: `Bearer ${Secret.fill(name)}` }
    await assert.rejects(
      createSandbox({ network: { rules: { 'a.example.com': [{ transform: { headers: { X: '${e2b.secrets.nope}' } } }] } } }),
      /which does not exist/,
    )
    await assert.rejects(createSandbox({ network: { rules: { '1.2.3.4': [{ transform: { headers: header } }] } } }), /not a domain name/)
    const sbx = await createSandbox({ network: { rules: { 'API.example.com': [{ transform: { headers: header } }] } } })
    made.push(sbx)
    const info = await Sandbox.getInfo(sbx.sandboxId)
    assert.deepEqual(info.network.rules, { 'api.example.com': [{ transform: { headers: header } }] })
    const [, text] = await rawGet(`/sandboxes/${sbx.sandboxId}`)
    assert.ok(!text.includes(VALUE))

    await sbx.updateNetwork({ rules: { '*.example.org': [{ transform: { headers: { 'X-Key': Secret.fill(name) } } }] } })
    assert.deepEqual(Object.keys((await Sandbox.getInfo(sbx.sandboxId)).network.rules), ['*.example.org'])
    await sbx.updateNetwork({ allowOut: ['10.1.2.3'] })
    assert.equal((await Sandbox.getInfo(sbx.sandboxId)).network.rules, undefined)
  } finally {
    await killAll(made)
    await Secret.destroy(name)
  }
})
