// Issue 19 item 3: parked connections, through the SDK. A sandbox whose metadata says
// `stasis_park_connections: on` keeps its proxied connections across a pause: a
// `commands.run` output stream goes on after pause + connect with no line lost or
// repeated, a PTY's output stream sees what is typed after the resume, and a WebSocket to a port of the sandbox echoes, on the same connection, what
// was sent while the sandbox was paused. Without it (the default) a pause cuts them, as
// the SDKs document (the other suites). Traffic goes only to 127.0.0.1.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import net from 'node:net'
import { Sandbox } from 'e2b'
import { createSandbox, killAll, runTag, waitFor, sleep } from './helpers.mjs'

const T = { timeout: 240_000 }
const PARK = { stasis_park_connections: 'on' }

test('a commands.run stream keeps delivering across pause + connect, no line lost or repeated', T, async () => {
  const sbx = await createSandbox({ metadata: { suite: 'parking', tag: runTag('pk'), ...PARK } })
  try {
    let seen = ''
    const run = sbx.commands.run('for i in $(seq 0 59); do echo $i; sleep 0.1; done', {
      onStdout: (d) => { seen += d },
      timeoutMs: 180_000,
    })
    await waitFor('the first lines', () => seen.includes('\n5\n'))
    assert.equal(await sbx.pause(), true)
    assert.equal(await sbx.isRunning(), false)
    await sleep(1000)
    const again = await Sandbox.connect(sbx.sandboxId)
    assert.equal(await again.isRunning(), true)
    const result = await run
    const want = Array.from({ length: 60 }, (_, i) => String(i))
    assert.deepEqual(result.stdout.trim().split('\n'), want, 'every line once, in order')
    assert.equal(seen, result.stdout, 'the callback saw the same stream')
    assert.equal(result.exitCode, 0)
  } finally {
    await killAll(sbx)
  }
})

test('a PTY session keeps its output stream across pause + connect', T, async () => {
  const sbx = await createSandbox({ metadata: { suite: 'parking', tag: runTag('pk'), ...PARK } })
  try {
    let out = ''
    const dec = new TextDecoder()
    const pty = await sbx.pty.create({ cols: 100, rows: 30, onData: (d) => { out += dec.decode(d, { stream: true }) }, timeoutMs: 0 })
    await sbx.pty.sendInput(pty.pid, new TextEncoder().encode('echo "before-$((6*7))"\n'))
    await waitFor('output before the pause', () => out.includes('before-42'))
    assert.equal(await sbx.pause(), true)
    await sleep(500)
    const again = await Sandbox.connect(sbx.sandboxId)
    await again.pty.sendInput(pty.pid, new TextEncoder().encode('echo "after-$((7*8))"\n'))
    await waitFor('output after the resume, on the handle opened before the pause', () => out.includes('after-56'))
    await again.pty.sendInput(pty.pid, new TextEncoder().encode('exit\n'))
    assert.equal((await pty.wait()).exitCode, 0, 'the same stream sees the PTY end')
  } finally {
    await killAll(sbx)
  }
})

// A WebSocket echo on port 8000 (standard library only).
const WS_SERVER = `
import base64, hashlib, http.server, socketserver
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a): pass
    def do_GET(self):
        key = self.headers["Sec-WebSocket-Key"]
        acc = base64.b64encode(hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()).decode()
        self.send_response(101); self.send_header("Upgrade", "websocket"); self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", acc); self.end_headers(); self.wfile.flush()
        while True:
            h = self.rfile.read(2)
            if len(h) < 2: return
            n = h[1] & 127
            mask = self.rfile.read(4); data = bytes(b ^ mask[i % 4] for i, b in enumerate(self.rfile.read(n)))
            self.wfile.write(bytes([0x81, len(data)]) + data); self.wfile.flush()
class S(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
S(("0.0.0.0", 8000), H).serve_forever()
`

/** A minimal WebSocket client over the proxy (Node 20 has no WebSocket of its own). */
async function websocket(sandboxId, port) {
  const url = new URL(process.env.E2B_API_URL)
  const sock = net.connect(Number(url.port), url.hostname)
  await new Promise((ok, fail) => { sock.once('connect', ok); sock.once('error', fail) })
  let buf = Buffer.alloc(0)
  let closed = false
  const waiters = []
  const wake = () => { while (waiters.length) waiters.shift()() }
  sock.on('data', (d) => { buf = Buffer.concat([buf, d]); wake() })
  sock.on('close', () => { closed = true; wake() })
  sock.on('error', () => {})
  const until = async (f, what) => {
    const end = Date.now() + 60_000
    for (;;) {
      const got = f()
      if (got !== undefined) return got
      if (closed) throw new Error(`connection closed waiting for ${what}`)
      if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
      await new Promise((r) => { waiters.push(r); setTimeout(r, 1000) })
    }
  }
  sock.write(`GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nE2b-Sandbox-Id: ${sandboxId}\r\nE2b-Sandbox-Port: ${port}\r\n` +
    'Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n')
  const head = await until(() => {
    const i = buf.indexOf('\r\n\r\n')
    if (i < 0) return undefined
    const h = buf.subarray(0, i).toString()
    buf = buf.subarray(i + 4)
    return h
  }, 'the upgrade')
  assert.match(head, /^HTTP\/1\.1 101/, head)
  return {
    send(text) {
      const data = Buffer.from(text)
      const mask = Buffer.from([9, 8, 7, 6])
      sock.write(Buffer.concat([Buffer.from([0x81, 0x80 | data.length]), mask, data.map((b, i) => b ^ mask[i % 4])]))
    },
    recv: () => until(() => {
      if (buf.length < 2 || buf.length < 2 + (buf[1] & 127)) return undefined
      const n = buf[1] & 127
      const text = buf.subarray(2, 2 + n).toString()
      buf = buf.subarray(2 + n)
      return text
    }, 'a message'),
    closed: () => closed,
    end: () => sock.destroy(),
  }
}

test('a WebSocket through the proxy stays open across pause + connect and gets what was sent while paused', T, async () => {
  const sbx = await createSandbox({ metadata: { suite: 'parking', tag: runTag('pk'), ...PARK } })
  try {
    await sbx.files.write('/tmp/ws.py', WS_SERVER)
    await sbx.commands.run('python3 /tmp/ws.py', { background: true, timeoutMs: 0 })
    await waitFor('the WebSocket server', async () => (await sbx.commands.run('ss -ltn')).stdout.includes(':8000'))
    const ws = await websocket(sbx.sandboxId, 8000)
    ws.send('before')
    assert.equal(await ws.recv(), 'before')
    assert.equal(await sbx.pause(), true)
    ws.send('sent while paused')
    await sleep(1000)
    assert.equal(ws.closed(), false, 'a pause does not cut a parked connection')
    await Sandbox.connect(sbx.sandboxId)
    assert.equal(await ws.recv(), 'sent while paused', 'echoed after the resume, on the same connection')
    ws.send('after')
    assert.equal(await ws.recv(), 'after')
    ws.end()
  } finally {
    await killAll(sbx)
  }
})
