// Issue 15: a real code interpreter, with npm @e2b/code-interpreter 2.8.
//
// Sandbox.create() starts a `code-interpreter-v1` sandbox from the template's warm
// snapshot (its kernels already run); runCode talks to the code interpreter on port
// 49999 through the Stasis proxy. The kernels' state is the sandbox's memory: it
// survives pause + connect.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Sandbox } from '@e2b/code-interpreter'
import { killAll, runTag, seen } from './helpers.mjs'

async function create(opts = {}) {
  const sbx = await Sandbox.create({ timeoutMs: 300_000, requestTimeoutMs: 60_000, ...opts })
  seen(sbx.sandboxId)
  return sbx
}

function text(execution) {
  assert.equal(execution.error, undefined, JSON.stringify(execution.error))
  return execution.text
}

test("the user's flow: x = 41, pause, connect, x + 1 is 42", async () => {
  const sbx = await create({ metadata: { tag: runTag('ci-js') } })
  try {
    assert.equal(text(await sbx.runCode('x = 41')), undefined)
    await sbx.runCode("import pandas as pd\ndf = pd.DataFrame({'a': [1, 2, 3]})\nf = open('/home/user/h.txt', 'w')")
    assert.equal(await sbx.pause(), true)
    const again = await Sandbox.connect(sbx.sandboxId, { timeoutMs: 300_000 })
    assert.equal(text(await again.runCode('x + 1')), '42')
    assert.equal(text(await again.runCode("f.write('ok'); f.flush(); int(df['a'].sum())")), '6')
    assert.equal((await again.commands.run('cat /home/user/h.txt')).stdout, 'ok')
  } finally {
    await killAll(sbx)
  }
})

test('a matplotlib chart comes back as PNG and as a parsed chart', async () => {
  const sbx = await create()
  try {
    const ex = await sbx.runCode(
      "import matplotlib.pyplot as plt\nplt.bar(['a', 'b', 'c'], [3, 1, 2], label='n')\nplt.title('Bars')\nplt.show()",
    )
    assert.equal(ex.error, undefined, JSON.stringify(ex.error))
    const withPng = ex.results.filter((r) => r.png)
    assert.equal(withPng.length, 1, JSON.stringify(ex.results.map((r) => r.formats())))
    assert.ok(withPng[0].png.length > 1000)
    const chart = withPng[0].chart
    assert.ok(chart, 'the SDK got a chart object')
    assert.equal(chart.type, 'bar')
    assert.equal(chart.title, 'Bars')
    assert.deepEqual(
      chart.elements.map((e) => [e.label, Number(e.value)]),
      [
        ['a', 3],
        ['b', 1],
        ['c', 2],
      ],
    )
  } finally {
    await killAll(sbx)
  }
})

test('an exception is an error, and a timed-out run leaves the context usable', async () => {
  const sbx = await create()
  try {
    await sbx.runCode('x = 41')
    const ex = await sbx.runCode("raise ValueError('bad value')")
    assert.equal(ex.error?.name, 'ValueError')
    assert.equal(ex.error?.value, 'bad value')
    assert.match(ex.error?.traceback ?? '', /ValueError/)
    const t0 = Date.now()
    await assert.rejects(sbx.runCode('import time\nwhile True: time.sleep(0.1)', { timeoutMs: 2_000 }))
    assert.ok(Date.now() - t0 < 20_000)
    const t1 = Date.now()
    assert.equal(text(await sbx.runCode('x + 1')), '42')
    assert.ok(Date.now() - t1 < 10_000, 'the endless loop was interrupted')
    assert.equal(text(await sbx.runCode('[1, 2].map((v) => v * 21)[1]', { language: 'js' })), '42')
  } finally {
    await killAll(sbx)
  }
})
