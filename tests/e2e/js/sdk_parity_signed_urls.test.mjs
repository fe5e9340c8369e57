// Issue 14: signed file URLs (`downloadUrl` / `uploadUrl` of a `secure` sandbox), npm e2b
// 2.51, as e2b's own tests (js-sdk tests/sandbox/files/secured.test.ts) check them. The
// URLs carry no sandbox header, so this file runs in host-routing mode (helpers.mjs
// `useHostRouting`): the SDK unchanged, `E2B_DOMAIN` set, no `E2B_SANDBOX_URL`.
// docs/sdk-parity.md maps each method/option to the test here that proves it.
import { test, before } from 'node:test'
import assert from 'node:assert/strict'
import { Sandbox } from 'e2b'
import { createSandbox, killAll, useHostRouting } from './helpers.mjs'

const T = { timeout: 120_000 }
let domain
before(async () => {
  ;({ domain } = await useHostRouting())
})

async function fetchJson(url, init) {
  const res = await fetch(url, init)
  return [res.status, JSON.parse(await res.text())]
}

function form(text) {
  const f = new FormData()
  f.append('file', text)
  return f
}

test('host-routing mode: the SDK reaches a secure sandbox at https://{port}-{id}.{domain}', T, async () => {
  const sbx = await createSandbox({ secure: true })
  try {
    assert.equal(process.env.E2B_SANDBOX_URL, undefined)
    assert.equal((await sbx.commands.run('echo Hello World!')).stdout, 'Hello World!\n')
    const url = await sbx.downloadUrl('x')
    assert.match(url, new RegExp(`^https://49983-${sbx.sandboxId}\\.${domain.replace('.', '\\.')}/files\\?`))
  } finally {
    await killAll(sbx)
  }
})

test('signed downloadUrl: valid (user and root) is served; expired and forged are refused with envd\'s JSON', T, async () => {
  const sbx = await createSandbox({ secure: true })
  try {
    await sbx.files.write('hello.txt', 'hello world')
    const ok = await fetch(await sbx.downloadUrl('hello.txt', { useSignatureExpiration: 10_000 }))
    assert.equal(ok.status, 200)
    assert.equal(await ok.text(), 'hello world')
    const noExpiry = await fetch(await sbx.downloadUrl('hello.txt'))
    assert.equal(await noExpiry.text(), 'hello world', 'a signature without expiration')

    await sbx.files.write('hello.txt', 'hello root', { user: 'root' })
    const root = await fetch(await sbx.downloadUrl('hello.txt', { user: 'root', useSignatureExpiration: 10_000 }))
    assert.equal(root.status, 200)
    assert.equal(await root.text(), 'hello root')

    const expired = await sbx.downloadUrl('hello.txt', { useSignatureExpiration: -10_000 })
    assert.deepEqual(await fetchJson(expired), [401, { code: 401, message: 'signature is already expired' }])

    const forged = new URL(await sbx.downloadUrl('hello.txt'))
    forged.searchParams.set('path', '/etc/shadow') // the signature covers the path
    assert.deepEqual(await fetchJson(forged), [401, { code: 401, message: 'invalid signature' }])
    const unsigned = new URL(forged)
    unsigned.searchParams.delete('signature')
    assert.deepEqual(await fetchJson(unsigned), [401, { code: 401, message: 'missing signature query parameter' }])
    const readForWrite = await sbx.downloadUrl('hello.txt')
    assert.deepEqual(await fetchJson(readForWrite, { method: 'POST', body: form('x') }), [401, { code: 401, message: 'invalid signature' }], 'a read URL opens no write')
  } finally {
    await killAll(sbx)
  }
})

test('signed uploadUrl: valid (user and root) writes the file; expired is refused', T, async () => {
  const sbx = await createSandbox({ secure: true })
  try {
    const url = await sbx.uploadUrl('hello.txt', { useSignatureExpiration: 10_000 })
    assert.deepEqual(await fetchJson(url, { method: 'POST', body: form('file content') }), [
      200,
      [{ name: 'hello.txt', path: '/home/user/hello.txt', type: 'file' }],
    ])
    assert.equal(await sbx.files.read('hello.txt'), 'file content')

    const rootUrl = await sbx.uploadUrl('hello.txt', { user: 'root', useSignatureExpiration: 10_000 })
    assert.deepEqual(await fetchJson(rootUrl, { method: 'POST', body: form('root content') }), [
      200,
      [{ name: 'hello.txt', path: '/root/hello.txt', type: 'file' }],
    ])
    assert.equal((await sbx.commands.run('stat -c %U /root/hello.txt', { user: 'root' })).stdout.trim(), 'root')

    const expired = await sbx.uploadUrl('hello.txt', { useSignatureExpiration: -100_000 })
    assert.deepEqual(await fetchJson(expired, { method: 'POST', body: form('x') }), [401, { code: 401, message: 'signature is already expired' }])
    assert.equal(await sbx.files.read('hello.txt'), 'file content', 'unchanged')
  } finally {
    await killAll(sbx)
  }
})

test('a forged signed URL does not resume a paused sandbox', T, async () => {
  const sbx = await createSandbox({ secure: true, lifecycle: { onTimeout: 'pause', autoResume: true } })
  try {
    const good = await sbx.downloadUrl('nothing.txt')
    const forged = new URL(good)
    forged.searchParams.set('signature', 'v1_forged')
    assert.equal(await sbx.pause(), true)
    assert.deepEqual(await fetchJson(forged), [401, { code: 401, message: 'invalid signature' }])
    assert.equal((await Sandbox.getInfo(sbx.sandboxId)).state, 'paused', 'still paused')
  } finally {
    await killAll(sbx)
  }
})
