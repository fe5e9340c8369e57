// Template tags with npm e2b 2.51 (issues 14 and 16): a tag names one build of a template.
// `Template.build(t, 'name:tag', { tags })` moves the tags it names (none: `default`, what
// the name alone means); `Sandbox.create('name:tag')` gets that build even after later
// builds of other tags; `Template.assignTags` / `removeTags` / `getTags` / `exists`; a
// sandbox made from a tag runs on, pauses and resumes after the tag and its build go.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Template, Sandbox, TemplateError } from 'e2b'
import { createSandbox, killAll, runTag } from './helpers.mjs'

const T = { timeout: 600_000 }

const writes = (text) => Template().fromTemplate('base').runCmd(`echo ${text} > /opt/v.txt`)

async function version(sbx) {
  return (await sbx.files.read('/opt/v.txt')).trim()
}

async function createRead(template) {
  const sbx = await createSandbox({ template })
  try {
    return await version(sbx)
  } finally {
    await killAll(sbx)
  }
}

async function api(method, path, body) {
  const r = await fetch(`${process.env.E2B_API_URL}${path}`, {
    method,
    headers: { 'X-API-KEY': process.env.E2B_API_KEY, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  })
  const text = await r.text()
  return { status: r.status, body: text ? JSON.parse(text) : null }
}

test('tags: builds move the tags they name, creates get the tagged build, assign/remove/get, sandboxes outlive their tag', T, async () => {
  const name = runTag('tags')
  const made = []
  try {
    // No tag: `default`, what the name alone means.
    const one = await Template.build(writes('one'), name)
    assert.deepEqual(one.tags, ['default'])
    // `name:tag` plus the `tags` option: both move, `default` stays on the first build.
    const two = await Template.build(writes('two'), `${name}:v2`, { tags: ['Beta'] })
    assert.deepEqual([...two.tags].sort(), ['beta', 'v2'])
    assert.equal(await createRead(name), 'one')
    assert.equal(await createRead(`${name}:default`), 'one')
    assert.equal(await createRead(`${name}:v2`), 'two')
    assert.equal(await createRead(`${name}:beta`), 'two')
    await assert.rejects(Sandbox.create(`${name}:nope`, { requestTimeoutMs: 30_000 }), /not found/)

    const byTag = Object.fromEntries((await Template.getTags(name)).map((t) => [t.tag, t.buildId]))
    assert.deepEqual(byTag, { default: one.buildId, v2: two.buildId, beta: two.buildId })
    assert.ok((await Template.getTags(name)).every((t) => t.createdAt instanceof Date && !isNaN(t.createdAt)))
    assert.equal(await Template.exists(name), true)
    assert.equal(await Template.exists(`${name}:v2`), true)
    assert.equal(await Template.exists(`${name}:nope`), false)

    // A later build of `default` leaves `v2` where it was.
    const sbxV2 = await createSandbox({ template: `${name}:v2` })
    made.push(sbxV2)
    const three = await Template.build(writes('three'), name)
    assert.equal(await createRead(name), 'three')
    assert.equal(await createRead(`${name}:v2`), 'two')

    // assignTags: from a tag (or the name: `default`) to more tags.
    const assigned = await Template.assignTags(`${name}:v2`, 'prod')
    assert.deepEqual(assigned, { buildId: two.buildId, tags: ['prod'] })
    assert.equal(await createRead(`${name}:prod`), 'two')
    const fromDefault = await Template.assignTags(name, ['stable', 'latest'])
    assert.equal(fromDefault.buildId, three.buildId)
    assert.equal(await createRead(`${name}:latest`), 'three')

    // The listing names every tag with its build.
    const listed = (await api('GET', '/templates')).body.find((t) => t.templateID === name)
    assert.deepEqual(
      Object.fromEntries(listed.tags.map((t) => [t.tag, t.buildID])),
      { default: three.buildId, v2: two.buildId, beta: two.buildId, prod: two.buildId, stable: three.buildId, latest: three.buildId },
    )

    // removeTags: the tag goes; a sandbox made from it runs on, and once no tag names
    // its build (the build retires), it still pauses and resumes on its layers.
    await Template.removeTags(name, ['v2', 'beta'])
    await assert.rejects(Sandbox.create(`${name}:v2`, { requestTimeoutMs: 30_000 }), /not found/)
    assert.equal(await createRead(`${name}:prod`), 'two')
    await Template.removeTags(name, 'prod')
    assert.deepEqual((await Template.getTags(name)).map((t) => t.tag).sort(), ['default', 'latest', 'stable'])
    assert.equal(await version(sbxV2), 'two')
    await sbxV2.pause()
    const back = await Sandbox.connect(sbxV2.sandboxId)
    assert.equal(await version(back), 'two', 'the layers of a retired build stay while a sandbox uses them')
    assert.equal((await back.commands.run('echo alive')).stdout, 'alive\n')

    // Refused, as E2B does: the default tag, a tag in the name, no tags, bad tags.
    await assert.rejects(Template.removeTags(name, 'default'), (e) => e instanceof TemplateError && /default/.test(e.message))
    assert.equal((await api('DELETE', '/templates/tags', { name: `${name}:latest`, tags: ['latest'] })).status, 400)
    assert.equal((await api('POST', '/templates/tags', { target: name, tags: [] })).status, 400)
    await assert.rejects(Template.assignTags(name, 'a/b'), TemplateError)
    await assert.rejects(Template.assignTags(`${name}:nope`, 'x'), /not found/)
    await assert.rejects(Template.getTags(runTag('none')), /not found/)
    // A template made by setup has no builds to tag.
    await assert.rejects(Template.assignTags('base', 'mine'), /made by setup/)
    assert.deepEqual(await Template.getTags('base'), [])
    const plain = await createSandbox({ template: 'base:default' })
    made.push(plain)
    assert.equal((await plain.commands.run('echo base')).stdout, 'base\n')
  } finally {
    await killAll(made)
    await api('DELETE', `/templates/${name}`)
  }
})

test('tags: a template built only with a tag has no default; removing the template removes every tag', T, async () => {
  const name = runTag('only')
  try {
    const b = await Template.build(writes('tagged'), name, { tags: ['v1'] })
    assert.deepEqual(b.tags, ['v1'])
    assert.equal(await Template.exists(name), true)
    assert.equal(await Template.exists(`${name}:default`), false)
    await assert.rejects(Sandbox.create(name, { requestTimeoutMs: 30_000 }), /not found/)
    assert.equal(await createRead(`${name}:v1`), 'tagged')
    assert.equal((await api('DELETE', `/templates/${name}`)).status, 204)
    assert.equal(await Template.exists(name), false)
    await assert.rejects(Sandbox.create(`${name}:v1`, { requestTimeoutMs: 30_000 }), /not found/)
  } finally {
    await api('DELETE', `/templates/${name}`)
  }
})
