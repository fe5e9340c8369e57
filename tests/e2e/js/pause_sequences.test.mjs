// Issue 12: pause and resume never fail on a real user's sequence of operations. Every
// cycle mixes file operations as the SDK's default user (`user`) and as `root`, a command,
// a pause and a connect; a background process keeps its pid and the secret it holds only
// in memory. (A second pause after any files.* call as `user` used to fail.)
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { Sandbox } from 'e2b'
import { createSandbox, killAll, runTag, waitFor } from './helpers.mjs'

const T = { timeout: 600_000 }

// Holds a secret read from stdin in memory and answers it, with its pid, on a loopback port.
const KEEPER = `
import os, socket, sys
secret = sys.stdin.readline().strip()
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", 7078)); s.listen(8)
while True:
    c, _ = s.accept()
    c.sendall(f"{os.getpid()} {secret}\\n".encode()); c.close()
`
const ASK = `python3 -c 'import socket; s=socket.create_connection(("127.0.0.1", 7078)); print(s.makefile().readline().strip())' 2>/dev/null || true`

async function ask(sbx) {
  return (await sbx.commands.run(ASK)).stdout.trim()
}

async function startKeeper(sbx) {
  const secret = randomBytes(16).toString('hex')
  await sbx.files.write('/home/user/keeper.py', KEEPER)
  const h = await sbx.commands.run(`echo ${secret} | python3 /home/user/keeper.py`, { background: true, timeoutMs: 0 })
  await h.disconnect()
  const answer = await waitFor('the keeper to listen', () => ask(sbx))
  const [pid, got] = answer.split(' ')
  assert.equal(got, secret)
  return `${pid} ${secret}`
}

// One cycle's file operations, as `user` (the default) and `root`, and a command.
async function filesBetween(sbx, i, files) {
  const path = `/home/user/cycle-${i}.txt`
  await sbx.files.write(path, `cycle ${i} as user`)
  files.set(path, `cycle ${i} as user`)
  switch (i % 5) {
    case 0:
      assert.equal(await sbx.files.read(path), files.get(path))
      break
    case 1:
      assert.ok((await sbx.files.list('/home/user')).some((e) => e.name === `cycle-${i}.txt`))
      break
    case 2:
      assert.equal(await sbx.files.exists(path), true)
      await sbx.files.makeDir(`/home/user/dir-${i}`)
      break
    case 3: {
      const rootPath = `/root/cycle-${i}.txt`
      await sbx.files.write(rootPath, `cycle ${i} as root`, { user: 'root' })
      files.set(rootPath, `cycle ${i} as root`)
      assert.equal(await sbx.files.read(rootPath, { user: 'root' }), files.get(rootPath))
      break
    }
    default: {
      const moved = `/home/user/moved-${i}.txt`
      await sbx.files.rename(path, moved)
      await sbx.files.remove(moved)
      files.delete(path)
    }
  }
  assert.equal((await sbx.commands.run(`echo cycle-${i}`)).stdout.trim(), `cycle-${i}`)
}

test('20 pause/connect cycles with file operations and a command between each', T, async () => {
  let sbx = await createSandbox({ timeoutMs: 600_000, metadata: { tag: runTag('seq') } })
  try {
    const keeper = await startKeeper(sbx)
    const files = new Map()
    for (let i = 0; i < 20; i++) {
      await filesBetween(sbx, i, files)
      assert.equal(await sbx.pause(), true, `pause ${i + 1}`)
      sbx = await Sandbox.connect(sbx.sandboxId, { timeoutMs: 600_000 })
      assert.equal(await ask(sbx), keeper, `cycle ${i + 1}: the background process kept its pid and memory`)
    }
    for (const [path, content] of files) {
      const user = path.startsWith('/root/') ? 'root' : 'user'
      assert.equal(await sbx.files.read(path, { user }), content, path)
    }
  } finally {
    await killAll(sbx.sandboxId)
  }
})
