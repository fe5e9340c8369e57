// Issue 15: Novita's persistence guide with `novita-sandbox/code-interpreter` (2.1.1).
//
// Novita's runCode calls https://49999-{id}.{domain} with no sandbox headers, so this
// file runs in host-routing mode (helpers.mjs `useHostRouting`): the SDK unchanged, its
// domain set, TLS to Stasis's listener with Stasis's local CA.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Sandbox } from 'novita-sandbox/code-interpreter'
import { killAll, seen, useHostRouting } from './helpers.mjs'

await useHostRouting()

const T = { timeout: 180_000 }

test("the persistence guide: variables and a DataFrame survive pause and connect", T, async () => {
  const sbx = await Sandbox.create({ timeoutMs: 300_000 })
  seen(sbx.sandboxId)
  try {
    await sbx.runCode("import pandas as pd\nx = 41\ndf = pd.DataFrame({'a': [1, 2, 3]})")
    assert.equal(await sbx.pause(), true)
    const again = await Sandbox.connect(sbx.sandboxId, { timeoutMs: 300_000 })
    const ex = await again.runCode("x + 1, int(df['a'].sum())")
    assert.equal(ex.error, undefined, JSON.stringify(ex.error))
    assert.equal(ex.text, '(42, 6)')
    const err = await again.runCode('undefined_name')
    assert.equal(err.error?.name, 'NameError')
    const chart = await again.runCode("import matplotlib.pyplot as plt\nplt.plot([1, 2], [3, 4])\nplt.show()")
    assert.ok(chart.results.some((r) => r.png), 'a PNG')
  } finally {
    await killAll(sbx.sandboxId)
  }
})
