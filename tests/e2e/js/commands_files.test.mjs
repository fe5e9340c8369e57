// Issue 3: commands, background processes, PTY and files with npm e2b 2.51 against the
// real agent behind `stasis serve`.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { createHash, randomBytes } from 'node:crypto'
import { CommandExitError, FileNotFoundError, NotFoundError, FilesystemEventType } from 'e2b'
import { createSandbox, killAll, runTag, waitFor, sleep } from './helpers.mjs'

const T = { timeout: 180_000 }
let sbx

before(async () => {
  sbx = await createSandbox({ metadata: { suite: 'commands_files', tag: runTag('cf') } })
})
after(async () => {
  await killAll(sbx)
})

// ------------------------------------------------------------------ commands

test('run a command: stdout, stderr and exit code', T, async () => {
  const r = await sbx.commands.run('echo out; echo err >&2; printf "%s" "$(whoami)"')
  assert.equal(r.exitCode, 0)
  assert.equal(r.stdout, 'out\nuser')
  assert.equal(r.stderr, 'err\n')
  const cwd = await sbx.commands.run('pwd')
  assert.equal(cwd.stdout, '/home/user\n', 'default cwd is the home of user')
  const withOpts = await sbx.commands.run('pwd; echo "$X"', { cwd: '/tmp', envs: { X: 'from opts' } })
  assert.equal(withOpts.stdout, '/tmp\nfrom opts\n')
  const root = await sbx.commands.run('id -u', { user: 'root' })
  assert.equal(root.stdout, '0\n')
})

test('a failing command raises CommandExitError with its exit code and output', T, async () => {
  await assert.rejects(sbx.commands.run('echo partial; echo bad >&2; exit 3'), (e) => {
    assert.ok(e instanceof CommandExitError, `CommandExitError, got ${e?.constructor?.name}: ${e}`)
    assert.equal(e.exitCode, 3)
    assert.equal(e.stdout, 'partial\n')
    assert.equal(e.stderr, 'bad\n')
    return true
  })
  await assert.rejects(sbx.commands.run('this-command-does-not-exist'), (e) => e instanceof CommandExitError && e.exitCode === 127)
})

test('background command: streams output, is listed, can be connected to again, gets stdin, is killed', T, async () => {
  const chunks = []
  // Prints a tick, then echoes each stdin line back upper-cased.
  const script = 'echo started; while IFS= read -r line; do echo "got:${line^^}"; done'
  const h = await sbx.commands.run(script, { background: true, stdin: true, timeoutMs: 0, onStdout: (d) => chunks.push(d) })
  let killed = false
  try {
    assert.ok(h.pid > 0)
    await waitFor('first streamed output', () => chunks.join('').includes('started\n'))

    const listed = await sbx.commands.list()
    const me = listed.find((p) => p.pid === h.pid)
    assert.ok(me, `background command listed: ${JSON.stringify(listed)}`)
    assert.ok([me.cmd, ...me.args].join(' ').includes('read -r line'), `its command line: ${JSON.stringify(me)}`)

    await sbx.commands.sendStdin(h.pid, 'hello\n')
    await waitFor('stdin echoed to the first handle', () => chunks.join('').includes('got:HELLO\n'))

    // Disconnect the first handle (the process keeps running), then connect again: the
    // new handle gets the output produced from then on and can send stdin.
    await h.disconnect()
    await sbx.commands.sendStdin(h.pid, 'between\n')
    const chunks2 = []
    const h2 = await sbx.commands.connect(h.pid, { onStdout: (d) => chunks2.push(d), timeoutMs: 0 })
    assert.equal(h2.pid, h.pid)
    await h2.sendStdin('again\n')
    await waitFor('stdin echoed to the re-connected handle', () => chunks2.join('').includes('got:AGAIN\n'))
    assert.ok(!chunks.join('').includes('got:AGAIN'), 'the disconnected handle gets nothing more')

    assert.equal(await sbx.commands.kill(h.pid), true, 'kill returns true for a running command')
    killed = true
    await waitFor('killed command gone from the list', async () => !(await sbx.commands.list()).some((p) => p.pid === h.pid))
    assert.equal(await sbx.commands.kill(h.pid), false, 'kill of a gone command returns false')
    await assert.rejects(h2.wait(), (e) => e instanceof CommandExitError, 'the re-connected handle sees the kill')
  } finally {
    if (!killed) await sbx.commands.kill(h.pid).catch(() => {})
  }
})

test('two handles connected to one background command at once both get its live output', T, async () => {
  // envd multiplexes a process's output to every connected client (Start + each Connect).
  const c1 = []
  const c2 = []
  const h = await sbx.commands.run('while IFS= read -r line; do echo "got:$line"; done', { background: true, stdin: true, timeoutMs: 0, onStdout: (d) => c1.push(d) })
  try {
    const h2 = await sbx.commands.connect(h.pid, { onStdout: (d) => c2.push(d), timeoutMs: 0 })
    for (const word of ['one', 'two', 'three']) {
      await sbx.commands.sendStdin(h.pid, `${word}\n`)
      await sleep(100)
    }
    const all = 'got:one\ngot:two\ngot:three\n'
    await waitFor('every line on both handles', () => c1.join('') === all && c2.join('') === all, 5_000).catch(() => {})
    assert.deepEqual({ first: c1.join(''), second: c2.join('') }, { first: all, second: all }, 'both handles get all the output')
    await h2.disconnect()
  } finally {
    await sbx.commands.kill(h.pid).catch(() => {})
  }
})

test('background command wait() returns its result; closeStdin ends a stdin reader', T, async () => {
  const h = await sbx.commands.run('sleep 0.5; echo done', { background: true })
  const r = await h.wait()
  assert.equal(r.exitCode, 0)
  assert.equal(r.stdout, 'done\n')

  const cat = await sbx.commands.run('cat; echo eof', { background: true, stdin: true })
  await cat.sendStdin('abc\n')
  await cat.closeStdin()
  const rc = await cat.wait()
  assert.equal(rc.stdout, 'abc\neof\n')
})

test('a PTY session echoes typed input', T, async () => {
  const out = []
  const dec = new TextDecoder()
  const pty = await sbx.pty.create({ cols: 100, rows: 30, onData: (d) => out.push(dec.decode(d, { stream: true })), timeoutMs: 0 })
  try {
    assert.ok(pty.pid > 0)
    await sbx.pty.sendInput(pty.pid, new TextEncoder().encode('echo "pty-$((6*7))"\n'))
    // The terminal echoes what was typed, and the shell prints the result.
    await waitFor('typed input echoed', () => out.join('').includes('echo "pty-$((6*7))"'))
    await waitFor('command output', () => out.join('').includes('pty-42'))
    const listed = await sbx.commands.list()
    assert.ok(listed.some((p) => p.pid === pty.pid), 'the PTY is listed as a process')
    await sbx.pty.resize(pty.pid, { cols: 120, rows: 40 })
    await sbx.pty.sendInput(pty.pid, new TextEncoder().encode('stty size\n'))
    await waitFor('new size', () => out.join('').includes('40 120'))
    await sbx.pty.sendInput(pty.pid, new TextEncoder().encode('exit\n'))
    const r = await pty.wait()
    assert.equal(r.exitCode, 0)
  } finally {
    await sbx.pty.kill(pty.pid).catch(() => {})
  }
})

// ------------------------------------------------------------------ files

test('files: write, read, list, exists, rename, remove, getInfo, makeDir', T, async () => {
  const dir = `/home/user/${runTag('files')}`
  assert.equal(await sbx.files.makeDir(dir), true)
  assert.equal(await sbx.files.makeDir(dir), false, 'makeDir of an existing dir returns false')
  const w = await sbx.files.write(`${dir}/a.txt`, 'text content\n')
  assert.equal(w.path, `${dir}/a.txt`)
  assert.equal(await sbx.files.read(`${dir}/a.txt`), 'text content\n')
  assert.equal((await sbx.commands.run(`cat ${dir}/a.txt`)).stdout, 'text content\n', 'a command sees the file')
  assert.equal((await sbx.commands.run(`stat -c %U ${dir}/a.txt`)).stdout, 'user\n', 'written as the default user')

  await sbx.files.write([
    { path: `${dir}/b.txt`, data: 'bee' },
    { path: `${dir}/sub/c.txt`, data: 'sea' },
  ])
  const names = (await sbx.files.list(dir)).map((e) => `${e.name}:${e.type}`).sort()
  assert.deepEqual(names, ['a.txt:file', 'b.txt:file', 'sub:dir'])
  const deep = (await sbx.files.list(dir, { depth: 2 })).map((e) => e.path).sort()
  assert.deepEqual(deep, [`${dir}/a.txt`, `${dir}/b.txt`, `${dir}/sub`, `${dir}/sub/c.txt`])

  const info = await sbx.files.getInfo(`${dir}/a.txt`)
  assert.equal(info.size, 13)
  assert.equal(info.type, 'file')

  assert.equal(await sbx.files.exists(`${dir}/a.txt`), true)
  assert.equal(await sbx.files.exists(`${dir}/nope`), false)

  const moved = await sbx.files.rename(`${dir}/a.txt`, `${dir}/renamed.txt`)
  assert.equal(moved.path, `${dir}/renamed.txt`)
  assert.equal(await sbx.files.exists(`${dir}/a.txt`), false)
  assert.equal(await sbx.files.read(`${dir}/renamed.txt`), 'text content\n')

  await sbx.files.remove(`${dir}/renamed.txt`)
  assert.equal(await sbx.files.exists(`${dir}/renamed.txt`), false)
  await assert.rejects(sbx.files.read(`${dir}/renamed.txt`), (e) => e instanceof FileNotFoundError || e instanceof NotFoundError)
  await sbx.files.remove(dir)
  assert.equal(await sbx.files.exists(dir), false)
})

test('files: binary content with all 256 byte values round-trips', T, async () => {
  const bytes = new Uint8Array(256 * 4)
  for (let i = 0; i < bytes.length; i++) bytes[i] = i % 256
  const path = `/tmp/${runTag('bin')}.bin`
  await sbx.files.write(path, bytes.buffer)
  const back = await sbx.files.read(path, { format: 'bytes' })
  assert.equal(back.length, bytes.length)
  assert.deepEqual(Buffer.from(back), Buffer.from(bytes))
  const sum = (await sbx.commands.run(`sha256sum ${path} | cut -d' ' -f1`)).stdout.trim()
  assert.equal(sum, createHash('sha256').update(bytes).digest('hex'), 'the sandbox sees the same bytes')
  const blob = await sbx.files.read(path, { format: 'blob' })
  assert.deepEqual(Buffer.from(await blob.arrayBuffer()), Buffer.from(bytes))
  await sbx.files.remove(path)
})

test('files: a 100 MiB file round-trips (sha256)', { timeout: 300_000 }, async () => {
  const size = 100 * 1024 * 1024
  const data = randomBytes(size)
  const want = createHash('sha256').update(data).digest('hex')
  const path = `/tmp/${runTag('big')}.bin`
  try {
    const w = await sbx.files.write(path, new Blob([data]), { requestTimeoutMs: 240_000 })
    assert.equal(w.path, path)
    assert.equal((await sbx.files.getInfo(path)).size, size)
    const inside = (await sbx.commands.run(`sha256sum ${path} | cut -d' ' -f1`, { timeoutMs: 120_000 })).stdout.trim()
    assert.equal(inside, want, 'sha256 inside the sandbox')

    const stream = await sbx.files.read(path, { format: 'stream', requestTimeoutMs: 240_000 })
    const h = createHash('sha256')
    let n = 0
    for await (const chunk of stream) {
      h.update(chunk)
      n += chunk.length
    }
    assert.equal(n, size)
    assert.equal(h.digest('hex'), want, 'sha256 of the streamed download')
  } finally {
    await sbx.files.remove(path).catch(() => {})
  }
})

test('files: watchDir gets create, write, rename and remove events', T, async () => {
  const dir = `/home/user/${runTag('watch')}`
  await sbx.files.makeDir(dir)
  const events = []
  const watcher = await sbx.files.watchDir(dir, (e) => events.push(e), { timeoutMs: 0 })
  try {
    await sbx.files.write(`${dir}/w.txt`, 'one')
    await sbx.commands.run(`echo more >> ${dir}/w.txt`)
    await sbx.files.rename(`${dir}/w.txt`, `${dir}/w2.txt`)
    await sbx.files.remove(`${dir}/w2.txt`)
    const has = (type, name) => events.some((e) => e.type === type && e.name === name)
    await waitFor('watch events', () =>
      has(FilesystemEventType.CREATE, 'w.txt') && has(FilesystemEventType.WRITE, 'w.txt') &&
      has(FilesystemEventType.RENAME, 'w.txt') && has(FilesystemEventType.REMOVE, 'w2.txt'))
  } finally {
    await watcher.stop()
    await sbx.files.remove(dir).catch(() => {})
  }
  const n = events.length
  await sbx.files.write(`${dir}-after-stop`, 'x')
  await sleep(300)
  assert.equal(events.length, n, 'no events after stop')
  await sbx.files.remove(`${dir}-after-stop`)
})

test('files: recursive watch sees a file in a new subdirectory', T, async () => {
  const dir = `/home/user/${runTag('rwatch')}`
  await sbx.files.makeDir(dir)
  const events = []
  const watcher = await sbx.files.watchDir(dir, (e) => events.push(e), { recursive: true, timeoutMs: 0 })
  try {
    await sbx.commands.run(`mkdir -p ${dir}/d1/d2 && echo x > ${dir}/d1/d2/f.txt`)
    await waitFor('event for the nested file', () => events.some((e) => e.name === 'd1/d2/f.txt' || e.name.endsWith('f.txt')))
  } finally {
    await watcher.stop()
    await sbx.files.remove(dir).catch(() => {})
  }
})
