// Shared helpers of the JS end-to-end tests. The server and the SDK environment
// (E2B_API_URL, E2B_SANDBOX_URL, E2B_API_KEY, NOVITA_*) come from run.sh.
import { appendFileSync, readFileSync } from 'node:fs'
import { randomBytes } from 'node:crypto'
import { Sandbox } from 'e2b'

for (const v of ['E2B_API_URL', 'E2B_SANDBOX_URL', 'E2B_API_KEY']) {
  if (!process.env[v]) throw new Error(`${v} is not set: run these tests through tests/e2e/run.sh`)
  if (v !== 'E2B_API_KEY' && !/^http:\/\/127\.0\.0\.1:\d+$/.test(process.env[v])) {
    throw new Error(`${v}=${process.env[v]}: the e2e tests only talk to 127.0.0.1`)
  }
}
if (process.env.E2B_DEBUG) throw new Error('E2B_DEBUG must not be set (it skips the control API)')

/** Whether this run is in host-routing mode (`E2E_ROUTING=host bash run.sh`): every file. */
export const HOST_ROUTING = process.env.E2E_ROUTING === 'host'

/** A metadata value unique to one test, so list filters see only that test's sandboxes. */
export function runTag(prefix = 't') {
  return `${prefix}-${randomBytes(6).toString('hex')}`
}

/** Remembers a sandbox id for run.sh's leak check (cgroups named after it). */
export function seen(id) {
  if (process.env.E2E_SEEN_IDS) appendFileSync(process.env.E2E_SEEN_IDS, `${id}\n`)
}

/** Creates a sandbox with e2b and records its id. */
export async function createSandbox(opts = {}) {
  const sbx = await Sandbox.create({ timeoutMs: 300_000, requestTimeoutMs: 60_000, ...opts })
  seen(sbx.sandboxId)
  return sbx
}

/** Kills sandboxes, ignoring ones already gone; never throws (used in finally). */
export async function killAll(...ids) {
  for (const id of ids.flat()) {
    if (!id) continue
    try {
      await Sandbox.kill(typeof id === 'string' ? id : id.sandboxId)
    } catch (e) {
      console.error(`cleanup: kill ${typeof id === 'string' ? id : id.sandboxId}: ${e}`)
    }
  }
}

/** Polls `f` until it returns a truthy value or `ms` passes. */
export async function waitFor(what, f, ms = 15_000, every = 100) {
  const end = Date.now() + ms
  let last
  while (Date.now() < end) {
    last = await f()
    if (last) return last
    await new Promise((r) => setTimeout(r, every))
  }
  throw new Error(`timed out after ${ms} ms waiting for ${what} (last: ${JSON.stringify(last)})`)
}

/** All items of a paginator, page by page; returns [items, pages]. */
export async function drain(paginator) {
  const items = []
  let pages = 0
  while (paginator.hasNext) {
    const page = await paginator.nextItems()
    pages++
    items.push(...page)
    if (pages > 1000) throw new Error('paginator does not end')
  }
  return [items, pages]
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms))

/**
 * Host-routing mode: the SDK runs unchanged with `E2B_DOMAIN` and no `E2B_SANDBOX_URL`, so
 * it addresses sandboxes as `https://{port}-{id}.{domain}` with no sandbox headers, as
 * against the hosted platform (signed file URLs, Novita's code interpreter on 49999).
 * One undici Agent here connects every `*.{domain}` host to Stasis's TLS listener on
 * 127.0.0.1 (SNI and `Host` unchanged, the certificate checked against run.sh's local CA)
 * and plain `http://127.0.0.1` (the control API) as it is; any other host is refused, so a
 * test never leaves loopback. It serves Node's fetch (undici's global dispatcher) and the
 * SDK's own fetches: on Node the SDKs load `undici` themselves and make their own `Agent`
 * (HTTP/2, connection limits), whose `dispatch` is routed to this one for sandbox hosts.
 * It changes the process's environment; calling it again changes nothing more.
 */
let hostRouting
export function useHostRouting() {
  hostRouting ??= routeHosts()
  return hostRouting
}

async function routeHosts() {
  const undici = await import('undici')
  const { E2E_TLS_PORT: tlsPort, E2E_DOMAIN: domain, E2E_CA_CERT: caFile } = process.env
  if (!tlsPort || !domain || !caFile) throw new Error('E2E_TLS_PORT, E2E_DOMAIN, E2E_CA_CERT: run through tests/e2e/run.sh')
  const connect = undici.buildConnector({ ca: readFileSync(caFile) })
  const isSandboxHost = (host) => host.endsWith(`.${domain}`)
  const routed = new undici.Agent({
    connect(opts, callback) {
      const host = opts.hostname
      if (host === '127.0.0.1') return connect(opts, callback)
      if (!isSandboxHost(host) || opts.protocol !== 'https:') {
        callback(new Error(`host-routing harness: ${opts.protocol}//${host} is neither a sandbox host nor loopback`), null)
        return
      }
      return connect({ ...opts, hostname: '127.0.0.1', host: `127.0.0.1:${tlsPort}`, port: Number(tlsPort), servername: host }, callback)
    },
  })
  const dispatch = undici.Agent.prototype.dispatch
  undici.Agent.prototype.dispatch = function (opts, handler) {
    const origin = new URL(String(opts.origin))
    const target = this !== routed && origin.hostname !== '127.0.0.1' ? routed : this
    return dispatch.call(target, opts, handler)
  }
  undici.setGlobalDispatcher(routed)
  delete process.env.E2B_SANDBOX_URL
  delete process.env.NOVITA_SANDBOX_URL
  process.env.E2B_DOMAIN = domain
  process.env.NOVITA_DOMAIN = domain
  return { domain, tlsPort: Number(tlsPort), ca: readFileSync(caFile) }
}

if (HOST_ROUTING) await useHostRouting()
