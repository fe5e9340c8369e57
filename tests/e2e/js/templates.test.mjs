// Custom templates with npm e2b 2.51: Template().fromTemplate('base') with copy, runCmd,
// setEnvs, setWorkdir, setStartCmd + waitForPort, built by Template.build with its logs
// streamed; a sandbox of it has the files, the env and the service answering through the
// proxy right after create. Rebuilds come from the cache; a changed step rebuilds from it
// on; a failing step says which and shows its output, and publishes nothing;
// buildInBackground + getBuildStatus.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, writeFileSync, mkdirSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Template, waitForPort, Sandbox, BuildError } from 'e2b'
import { Sandbox as Novita } from 'novita-sandbox'
import { createSandbox, killAll, runTag, sleep } from './helpers.mjs'

const T = { timeout: 600_000 }

function context() {
  const dir = mkdtempSync(join(tmpdir(), 'stasis-tpl-'))
  mkdirSync(join(dir, 'site'))
  writeFileSync(join(dir, 'site', 'index.html'), 'hello from a template\n')
  writeFileSync(join(dir, 'app.txt'), 'app file\n')
  return dir
}

function appTemplate(dir, runLine = 'echo built-$((6*7)) > /opt/built.txt') {
  return Template({ fileContextPath: dir })
    .fromTemplate('base')
    .copy('site', '/srv/site/')
    .copy('app.txt', '/opt/app.txt')
    .runCmd(runLine)
    .setEnvs({ GREETING: 'hi-env' })
    .runCmd('echo "$GREETING" > /opt/env.txt')
    .setWorkdir('/srv/site')
    .setStartCmd('python3 -m http.server 8000', waitForPort(8000))
}

async function proxied(sbx, port, path) {
  return fetch(`${process.env.E2B_API_URL}${path}`, {
    headers: { 'E2b-Sandbox-Id': sbx.sandboxId, 'E2b-Sandbox-Port': String(port) },
  })
}

test('Template.build from base: files, env and the service running right after create; cache; a changed step', T, async () => {
  const dir = context()
  const name = runTag('app')
  const logs = []
  let t0 = Date.now()
  await Template.build(appTemplate(dir), name, { onBuildLogs: (e) => logs.push(String(e.message ?? e)) })
  const firstMs = Date.now() - t0
  assert.ok(logs.some((l) => l.includes('RUN echo built')), `build logs stream the steps: ${logs.join('\n')}`)
  assert.ok(await Template.exists(name))

  let sbx
  try {
    t0 = Date.now()
    sbx = await createSandbox({ template: name })
    const createMs = Date.now() - t0
    // The service was started and captured at build time: it answers at once.
    const r = await proxied(sbx, 8000, '/index.html')
    assert.equal(r.status, 200)
    assert.equal(await r.text(), 'hello from a template\n')
    assert.equal(await sbx.files.read('/opt/built.txt'), 'built-42\n')
    assert.equal(await sbx.files.read('/opt/app.txt'), 'app file\n')
    assert.equal(await sbx.files.read('/opt/env.txt'), 'hi-env\n')
    assert.equal((await sbx.commands.run('echo $GREETING')).stdout, 'hi-env\n')
    console.log(`first build ${firstMs} ms, create ${createMs} ms`)
  } finally {
    await killAll(sbx)
  }

  // No change: every step from the cache, in seconds.
  const again = []
  t0 = Date.now()
  await Template.build(appTemplate(dir), name, { onBuildLogs: (e) => again.push(String(e.message ?? e)) })
  const cachedMs = Date.now() - t0
  const cached = again.filter((l) => l.includes('CACHED')).length
  assert.equal(cached, 5, `every step that makes a layer is cached:\n${again.join('\n')}`)
  assert.ok(cachedMs < 30_000, `cached rebuild took ${cachedMs} ms`)

  // One changed step: the steps before it cached, it and those after it run.
  const changed = []
  await Template.build(appTemplate(dir, 'echo built-changed > /opt/built.txt'), name, {
    onBuildLogs: (e) => changed.push(String(e.message ?? e)),
  })
  const stepLines = changed.filter((l) => /^\[\d+\/\d+\]/.test(l))
  assert.ok(stepLines.find((l) => l.startsWith('[1/') && l.includes('CACHED')), stepLines.join('\n'))
  assert.ok(stepLines.find((l) => l.startsWith('[2/') && l.includes('CACHED')), stepLines.join('\n'))
  assert.ok(stepLines.find((l) => l.startsWith('[3/') && !l.includes('CACHED')), stepLines.join('\n'))
  assert.ok(stepLines.find((l) => l.startsWith('[5/') && !l.includes('CACHED')), stepLines.join('\n'))
  let sbx2
  try {
    sbx2 = await createSandbox({ template: name })
    assert.equal(await sbx2.files.read('/opt/built.txt'), 'built-changed\n')
    assert.equal((await proxied(sbx2, 8000, '/index.html')).status, 200)
  } finally {
    await killAll(sbx2)
  }
  console.log(`cached rebuild ${cachedMs} ms`)
})

test('a failing step says which step and shows its output; nothing is published', T, async () => {
  const name = runTag('bad')
  const t = Template().fromTemplate('base').runCmd('echo fine').runCmd('echo boom-output-7; exit 3')
  await assert.rejects(Template.build(t, name), (e) => {
    assert.ok(e instanceof BuildError, `${e}`)
    assert.match(e.message, /step 2/)
    assert.match(e.message, /boom-output-7/)
    assert.match(e.message, /exit code 3/)
    return true
  })
  assert.equal(await Template.exists(name), false)
  await assert.rejects(Sandbox.create(name, { requestTimeoutMs: 30_000 }))
})

test('buildInBackground + getBuildStatus, skipCache', T, async () => {
  const name = runTag('bg')
  const t = Template().fromTemplate('base').skipCache().runCmd('echo $((1+1)) > /opt/bg.txt')
  const info = await Template.buildInBackground(t, name)
  assert.ok(info.buildId && info.templateId)
  let status
  let offset = 0
  const logs = []
  for (let i = 0; i < 600; i++) {
    status = await Template.getBuildStatus(info, { logsOffset: offset })
    offset += status.logEntries.length
    logs.push(...status.logEntries.map((e) => e.message))
    if (status.status === 'ready' || status.status === 'error') break
    await sleep(200)
  }
  assert.equal(status.status, 'ready', JSON.stringify(status.reason))
  assert.ok(logs.some((l) => l.includes('RUN echo')), logs.join('\n'))
  assert.ok(!logs.some((l) => l.includes('CACHED')), 'skipCache runs every step')
  let sbx
  try {
    sbx = await createSandbox({ template: name })
    assert.equal(await sbx.files.read('/opt/bg.txt'), '2\n')
  } finally {
    await killAll(sbx)
  }
})

test('a deleted template: its sandboxes run on, pause and resume; a Novita reset of one is refused and keeps it', T, async () => {
  const name = runTag('gone')
  await Template.build(Template().fromTemplate('base').runCmd('echo kept > /opt/kept.txt'), name)
  const sbx = await createSandbox({ template: name })
  try {
    await sbx.files.write('/home/user/mine.txt', 'mine')
    // `e2b template delete` sends this.
    const del = await fetch(`${process.env.E2B_API_URL}/templates/${name}`, {
      method: 'DELETE', headers: { 'X-API-KEY': process.env.E2B_API_KEY },
    })
    assert.equal(del.status, 204)
    assert.equal(await Template.exists(name), false)
    await assert.rejects(Sandbox.create(name), /not found/)
    await sbx.pause()
    const back = await Sandbox.connect(sbx.sandboxId)
    assert.equal(await back.files.read('/opt/kept.txt'), 'kept\n', 'its layers stay while a sandbox uses them')
    // Refused with a 409 ("... which is deleted: nothing to reset it to"), which the SDK
    // answers as false; nothing was torn down.
    assert.equal(await Novita.reset(sbx.sandboxId), false)
    assert.equal(await back.files.read('/home/user/mine.txt'), 'mine', 'the refused reset changed nothing')
    assert.equal((await Sandbox.getInfo(sbx.sandboxId)).state, 'running')
  } finally {
    await killAll(sbx.sandboxId)
  }
})
