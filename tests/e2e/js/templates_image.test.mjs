// Templates from OCI images with npm e2b 2.51, from local registries run.sh starts
// (Debian's docker-registry on loopback, images made by tests/oci/test-images.sh, no
// internet): a Debian (glibc) image with copy, runCmd, setEnvs and setStartCmd +
// waitForPort, whose sandboxes have the files, the image's and the template's env and the
// service answering right after create; a busybox (static, no `user` in the image)
// image from a registry that wants credentials, whose sandboxes run commands as `user`;
// a rebuild does not pull again; fromDockerfile with a registry FROM; and the errors
// (wrong credentials, no credentials, unreachable registry, bad reference, unknown
// image) fail the build at step `base` saying which, publishing nothing.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Template, waitForPort, BuildError } from 'e2b'
import { createSandbox, killAll, runTag } from './helpers.mjs'

const T = { timeout: 600_000 }
const REG = process.env.E2E_REGISTRY
const AUTH = process.env.E2E_AUTH_REGISTRY
const CREDS = { username: process.env.E2E_REGISTRY_USER, password: process.env.E2E_REGISTRY_PASSWORD }

async function proxied(sbx, port, path) {
  return fetch(`${process.env.E2B_API_URL}${path}`, {
    headers: { 'E2b-Sandbox-Id': sbx.sandboxId, 'E2b-Sandbox-Port': String(port) },
  })
}

test('fromImage (Debian, glibc): copy, runCmd, env, start command ready at create', T, async () => {
  assert.ok(REG, 'run.sh starts the registry (E2E_REGISTRY)')
  const dir = mkdtempSync(join(tmpdir(), 'stasis-img-'))
  writeFileSync(join(dir, 'index.html'), 'served from an image\n')
  const t = Template({ fileContextPath: dir })
    .fromImage(`${REG}/deb:1`)
    .copy('index.html', '/srv/www/')
    .runCmd('getconf GNU_LIBC_VERSION | cut -d" " -f1 > /opt/img.txt')
    .setEnvs({ APP_MODE: 'image' })
    .setWorkdir('/srv/www')
    .setStartCmd('python3 -m http.server 8000', waitForPort(8000))
  const name = runTag('deb')
  const logs = []
  await Template.build(t, name, { onBuildLogs: (e) => logs.push(String(e.message ?? e)) })
  assert.ok(logs.some((l) => l.includes('pulled and unpacked')), logs.join('\n'))
  let sbx
  try {
    sbx = await createSandbox({ template: name })
    const r = await proxied(sbx, 8000, '/index.html')
    assert.equal(r.status, 200)
    assert.equal(await r.text(), 'served from an image\n')
    assert.equal(await sbx.files.read('/opt/img.txt'), 'glibc\n')
    const env = await sbx.commands.run('echo "$DEB_MARK $APP_MODE" && whoami')
    assert.equal(env.stdout, 'glibc image\nuser\n', 'the image ENV, the template ENV, the default user')
  } finally {
    await killAll(sbx)
  }
})

test('fromImage with credentials (busybox, static, no user): commands run as the created user; cached rebuild', T, async () => {
  assert.ok(AUTH, 'run.sh starts the registry with htpasswd (E2E_AUTH_REGISTRY)')
  const t = () =>
    Template()
      .fromImage(`${AUTH}/bb:1`, CREDS)
      .runCmd('echo "built in $PWD with $OCI_GREETING" > /srv/built.txt')
  const name = runTag('bb')
  const logs = []
  await Template.build(t(), name, { onBuildLogs: (e) => logs.push(String(e.message ?? e)) })
  assert.ok(logs.some((l) => l.includes('created user user')), logs.join('\n'))
  let sbx
  try {
    sbx = await createSandbox({ template: name })
    assert.equal(await sbx.files.read('/srv/built.txt'), 'built in /srv with from-the-image\n')
    assert.equal(await sbx.files.read('/srv/image.txt'), 'made by test-images.sh\n')
    const who = await sbx.commands.run('whoami; echo $HOME; stat -c %U /home/user')
    assert.equal(who.stdout, 'user\n/home/user\nuser\n')
    await sbx.files.write('/home/user/mine.txt', 'written by user')
    assert.equal((await sbx.commands.run('cat /home/user/mine.txt')).stdout, 'written by user')
  } finally {
    await killAll(sbx)
  }
  const again = []
  const t0 = Date.now()
  await Template.build(t(), name, { onBuildLogs: (e) => again.push(String(e.message ?? e)) })
  assert.ok(again.some((l) => l.includes('already here')), `not pulled again:\n${again.join('\n')}`)
  assert.ok(again.some((l) => l.includes('CACHED')), again.join('\n'))
  console.log(`cached rebuild from an image ${Date.now() - t0} ms`)
})

test('fromDockerfile with a registry FROM', T, async () => {
  const t = Template().fromDockerfile(`FROM ${REG}/bb:1\nENV STAGE=docker\nRUN echo "$STAGE as $(whoami)" > /srv/df.txt\n`)
  const name = runTag('df')
  await Template.build(t, name)
  let sbx
  try {
    sbx = await createSandbox({ template: name })
    assert.equal(await sbx.files.read('/srv/df.txt'), 'docker as root\n')
    // fromDockerfile ends with USER user and WORKDIR /home/user, as E2B's does.
    assert.equal((await sbx.commands.run('pwd; whoami')).stdout, '/home/user\nuser\n')
  } finally {
    await killAll(sbx)
  }
})

test('image errors fail the build at step base, saying which; nothing is published', T, async () => {
  const cases = [
    [Template().fromImage(`${AUTH}/bb:1`, { username: CREDS.username, password: 'wrong' }), /refused the credentials/],
    [Template().fromImage(`${AUTH}/bb:1`), /needs credentials/],
    ['unreachable', /registry unreachable/],
    [Template().fromImage('127.0.0.1:5/Bad Name'), /bad image reference/],
    [Template().fromImage(`${REG}/nothing-here:1`), /not found/],
  ]
  for (const [t, want] of cases) {
    // A loopback port nothing listens on (the registry's, after it is gone, is not known
    // here: port 9 is discard, unused on this machine).
    const template = t === 'unreachable' ? Template().fromImage('127.0.0.1:9/app:1') : t
    const name = runTag('imgerr')
    await assert.rejects(Template.build(template, name), (e) => {
      assert.ok(e instanceof BuildError, `${e}`)
      assert.match(e.message, want)
      return true
    })
    assert.equal(await Template.exists(name), false)
  }
})
