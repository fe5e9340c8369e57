// npm @e2b/code-interpreter 2.8.0 and novita-sandbox 2.1.1 against a host-run
// stasis-interpreter: their Sandbox objects, built without an API (the sandbox URL set
// to the service), send their own requests and parse with their own parseOutput.
// Env: STASIS_TEST_URL, STASIS_TEST_TOKEN, STASIS_TEST_SDK_JS (a dir with node_modules).
// Run by tests/service.rs.
import assert from 'node:assert/strict'
import { pathToFileURL } from 'node:url'
import { join } from 'node:path'

const url = process.env.STASIS_TEST_URL
const token = process.env.STASIS_TEST_TOKEN
const mod = (p) => import(pathToFileURL(join(process.env.STASIS_TEST_SDK_JS, 'node_modules', p)).href)

function ok(name) {
  console.log(`js sdk: ${name}: ok`)
}

// @e2b/code-interpreter: the constructor takes what Sandbox.create would have learnt.
const { Sandbox } = await mod('@e2b/code-interpreter/dist/index.mjs')
const sbx = new Sandbox({
  sandboxId: 'local',
  envdVersion: '0.4.0',
  envdAccessToken: token,
  sandboxUrl: url,
  apiKey: 'unused',
})
const out = []
let ex = await sbx.runCode("jsv = 41\nprint('streamed')", { onStdout: (m) => out.push(m.line) })
assert.deepEqual(out, ['streamed\n'])
assert.equal((await sbx.runCode('jsv + 1')).text, '42')
ok('e2b runCode, stdout, state')
ex = await sbx.runCode('1/0')
assert.equal(ex.error.name, 'ZeroDivisionError')
ex = await sbx.runCode(
  "import matplotlib.pyplot as plt\nplt.plot([1, 2, 3], [1, 4, 9], label='sq')\nplt.title('Sq')\nplt.show()",
)
const fig = ex.results.find((r) => r.png)
assert.ok(fig && fig.chart, JSON.stringify(ex.results.map((r) => r.formats())))
assert.equal(fig.chart.type, 'line')
assert.deepEqual(fig.chart.elements[0].points, [[1, 1], [2, 4], [3, 9]])
ok('e2b chart')
assert.equal((await sbx.runCode("process.env.JE + '!'", { language: 'js', envs: { JE: 'j' } })).text, 'j!')
ok('e2b js with envs')
const ctx = await sbx.createCodeContext({ language: 'python', cwd: '/tmp' })
assert.equal(ctx.cwd, '/tmp')
assert.equal((await sbx.runCode('import os; os.getcwd()', { context: ctx })).text, '/tmp')
await sbx.restartCodeContext(ctx)
await sbx.removeCodeContext(ctx.id)
assert.ok(!(await sbx.listCodeContexts()).some((c) => c.id === ctx.id))
ok('e2b contexts')
await assert.rejects(sbx.runCode('import time\nwhile True: time.sleep(0.1)', { timeoutMs: 2000 }))
assert.equal((await sbx.runCode('jsv', { timeoutMs: 10000 })).text, '41')
ok('e2b timeout, then the context goes on')

// novita-sandbox/code-interpreter: the same protocol, its own client code.
const novita = await mod('novita-sandbox/dist/code-interpreter.mjs')
const nsbx = new novita.Sandbox({
  sandboxId: 'local',
  envdVersion: '0.4.0',
  envdAccessToken: token,
  sandboxUrl: url,
  apiKey: 'unused',
  debug: true,
})
// Novita builds its Jupyter URL from the host; aim it at the service.
Object.defineProperty(nsbx, 'jupyterUrl', { get: () => url })
ex = await nsbx.runCode('jsv * 2')
assert.equal(ex.text, '82')
assert.equal((await nsbx.runCode('echo novita', { language: 'bash' })).logs.stdout.join(''), 'novita\n')
const nctx = await nsbx.createCodeContext({ language: 'python' })
assert.ok((await nsbx.listCodeContexts()).some((c) => c.id === nctx.id))
await nsbx.removeCodeContext(nctx)
ok('novita runCode, contexts')
