// The Stasis dashboard: a client of the control API (X-API-KEY) and of the sandbox agent
// through the proxy (the envd PTY API), in plain JavaScript with no build step.
'use strict';

const $ = (id) => document.getElementById(id);
const KEY_STORE = 'stasis-api-key';
let key = sessionStorage.getItem(KEY_STORE);
let timer = null;
let terminal = null;

// ---------------------------------------------------------------- API
class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

async function api(method, path, body) {
  const headers = { 'X-API-KEY': key };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const resp = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await resp.text();
  let value = null;
  try { value = text ? JSON.parse(text) : null; } catch (_) { value = text; }
  if (!resp.ok) throw new ApiError(resp.status, (value && value.message) || resp.statusText);
  return value;
}

// ---------------------------------------------------------------- helpers
function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === 'class') e.className = v; else if (k === 'text') e.textContent = v; else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c);
  return e;
}

function ago(iso) {
  const s = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
  if (s < 90) return `${Math.round(s)} s`;
  if (s < 5400) return `${Math.round(s / 60)} min`;
  if (s < 172800) return `${Math.round(s / 3600)} h`;
  return `${Math.round(s / 86400)} d`;
}

function until(iso) {
  const s = (Date.parse(iso) - Date.now()) / 1000;
  if (s > 3e8) return 'never';
  return s <= 0 ? 'now' : `in ${ago(new Date(Date.now() - s * 1000).toISOString())}`;
}

function bytes(n) {
  const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return `${n.toFixed(i ? 1 : 0)} ${u[i]}`;
}

function stateBadge(state) { return el('span', { class: `state ${state}`, text: state }); }

function showError(where, e) {
  const box = $(where);
  if (box) box.textContent = e ? String(e.message || e) : '';
  if (e && e.status === 401) logout();
}

// ---------------------------------------------------------------- pages
const PAGES = ['login', 'sandboxes', 'sandbox', 'snapshots', 'templates'];

function show(page) {
  for (const p of PAGES) $(p).hidden = p !== page;
  $('nav').hidden = page === 'login';
  for (const a of document.querySelectorAll('#nav a')) a.classList.toggle('active', a.dataset.page === page || (page === 'sandbox' && a.dataset.page === 'sandboxes'));
}

async function route() {
  clearInterval(timer);
  if (terminal && !location.hash.startsWith(`#/sandbox/${terminal.id}`)) closeTerminal();
  if (!key) { show('login'); $('api-key').focus(); return; }
  const hash = location.hash || '#/';
  const m = hash.match(/^#\/sandbox\/([a-z0-9]+)$/);
  let refresh;
  if (m) { show('sandbox'); refresh = () => loadSandbox(m[1]); }
  else if (hash === '#/snapshots') { show('snapshots'); refresh = loadSnapshots; }
  else if (hash === '#/templates') { show('templates'); refresh = loadTemplates; }
  else { show('sandboxes'); refresh = loadSandboxes; loadTemplateChoices(); }
  await refresh();
  timer = setInterval(refresh, m ? 5000 : 2000);
}

function logout() {
  key = null;
  sessionStorage.removeItem(KEY_STORE);
  closeTerminal();
  location.hash = '#/';
  route();
}

// ---------------------------------------------------------------- sandboxes
function metadataFilter() {
  const text = $('filter-metadata').value.trim();
  if (!text) return '';
  const params = new URLSearchParams();
  for (const pair of text.split(',')) {
    const [k, ...v] = pair.split('=');
    if (k.trim()) params.append(k.trim(), v.join('=').trim());
  }
  return `&metadata=${encodeURIComponent(params.toString())}`;
}

async function loadSandboxes() {
  const state = $('filter-state').value || 'running,paused';
  let rows;
  try {
    rows = await api('GET', `/v2/sandboxes?limit=100&state=${state}${metadataFilter()}`);
  } catch (e) { showError('sandboxes-empty', e); $('sandboxes-empty').hidden = false; return; }
  const body = $('sandbox-rows');
  body.replaceChildren(...rows.map(sandboxRow));
  $('sandboxes-empty').hidden = rows.length > 0;
  $('sandboxes-empty').textContent = 'No sandboxes.';
}

function sandboxRow(s) {
  const meta = Object.entries(s.metadata || {}).map(([k, v]) => el('span', { class: 'tag', text: `${k}=${v}` }));
  const timeout = s.state === 'paused' ? `paused ${ago(s.pausedAt || s.endAt)} ago` : `ends ${until(s.endAt)}`;
  const tr = el('tr', { 'data-id': s.sandboxID, 'data-state': s.state },
    el('td', {}, el('a', { href: `#/sandbox/${s.sandboxID}`, class: 'mono', text: s.sandboxID })),
    el('td', {}, stateBadge(s.state)),
    el('td', { text: s.templateID }),
    el('td', {}, ...meta),
    el('td', { text: ago(s.startedAt) }),
    el('td', { text: timeout }),
    el('td', { text: `${s.memoryMB} MiB` }),
    el('td', {}, actions(s)));
  return tr;
}

function actions(s) {
  const box = el('span', { class: 'toolbar' });
  const add = (label, action, cls) => box.append(el('button', { 'data-action': action, 'data-id': s.sandboxID, class: cls || '', text: label }));
  if (s.state === 'running') { add('Pause', 'pause'); add('Snapshot', 'snapshot'); }
  else add('Resume', 'resume');
  add('Kill', 'kill', 'danger');
  return box;
}

async function act(action, id, button) {
  if (action === 'kill' && !confirm(`Kill sandbox ${id}? Its state is deleted.`)) return;
  if (button) { button.disabled = true; button.textContent += '…'; }
  try {
    if (action === 'pause') await api('POST', `/sandboxes/${id}/pause`);
    if (action === 'resume') await api('POST', `/v2/sandboxes/${id}/connect`, {});
    if (action === 'kill') await api('DELETE', `/sandboxes/${id}`);
    if (action === 'snapshot') await api('POST', `/sandboxes/${id}/snapshots`, {});
  } catch (e) { alert(`${action} failed: ${e.message}`); }
  if (action === 'kill' && location.hash.startsWith('#/sandbox/')) { location.hash = '#/'; return; }
  route();
}

async function loadTemplateChoices() {
  try {
    const templates = await api('GET', '/stasis/templates');
    const select = $('new-template');
    const current = select.value;
    select.replaceChildren(...templates.map((t) => el('option', { value: t.name, text: t.name })));
    if (current) select.value = current;
  } catch (_) { /* the list shows the error */ }
}

// ---------------------------------------------------------------- one sandbox
async function loadSandbox(id) {
  let s;
  try { s = await api('GET', `/sandboxes/${id}`); }
  catch (e) {
    showError('sbx-error', e.status === 404 ? new Error(`sandbox ${id} is gone`) : e);
    $('sbx-actions').replaceChildren();
    return loadEvents(id);
  }
  showError('sbx-error', s.lastError ? new Error(`${s.lastError.operation} failed: ${s.lastError.message}`) : null);
  $('sbx-id').textContent = s.sandboxID;
  $('sbx-state').replaceWith(Object.assign(stateBadge(s.state), { id: 'sbx-state' }));
  const meta = Object.entries(s.metadata || {}).map(([k, v]) => `${k}=${v}`).join(', ');
  $('sbx-facts').textContent = `template ${s.templateID} · ${s.cpuCount} CPU · ${s.memoryMB} MiB · disk ${s.diskSizeMB} MiB · started ${ago(s.startedAt)} ago · `
    + (s.state === 'paused' ? `paused ${ago(s.pausedAt || s.endAt)} ago` : `ends ${until(s.endAt)}`) + (meta ? ` · ${meta}` : '');
  $('sbx-actions').replaceChildren(actions(s));
  $('term-open').disabled = s.state !== 'running' || !!terminal;
  await Promise.all([loadMetrics(id), loadEvents(id)]);
}

async function loadMetrics(id) {
  let points = [];
  try { points = await api('GET', `/sandboxes/${id}/metrics`); } catch (_) { /* paused or gone: no points */ }
  chart('chart-cpu', points.map((p) => p.cpuUsedPct), 100);
  const memTotal = points.length ? points[points.length - 1].memTotal : 1;
  chart('chart-mem', points.map((p) => p.memUsed), memTotal);
  const last = points[points.length - 1];
  $('cpu-now').textContent = last ? `${last.cpuUsedPct.toFixed(1)} % of ${last.cpuCount}` : '';
  $('mem-now').textContent = last ? `${bytes(last.memUsed)} of ${bytes(last.memTotal)}` : '';
}

// A line chart of `values` (0..max) as inline SVG.
function chart(svgId, values, max) {
  const svg = $(svgId);
  const ns = 'http://www.w3.org/2000/svg';
  const W = 400, H = 120;
  const grid = [0.25, 0.5, 0.75].map((f) => {
    const l = document.createElementNS(ns, 'line');
    l.setAttribute('class', 'grid'); l.setAttribute('x1', 0); l.setAttribute('x2', W);
    l.setAttribute('y1', H * f); l.setAttribute('y2', H * f);
    return l;
  });
  const children = [...grid];
  if (values.length) {
    const step = values.length > 1 ? W / (values.length - 1) : W;
    const pts = values.map((v, i) => `${(i * step).toFixed(1)},${(H - Math.min(1, v / (max || 1)) * (H - 4) - 2).toFixed(1)}`);
    if (values.length === 1) pts.push(`${W},${pts[0].split(',')[1]}`);
    const area = document.createElementNS(ns, 'polygon');
    area.setAttribute('class', 'area');
    area.setAttribute('points', `0,${H} ${pts.join(' ')} ${W},${H}`);
    const line = document.createElementNS(ns, 'polyline');
    line.setAttribute('class', 'line');
    line.setAttribute('points', pts.join(' '));
    children.push(area, line);
  }
  svg.replaceChildren(...children);
}

async function loadEvents(id) {
  let events = [];
  try { events = await api('GET', `/stasis/sandboxes/${id}/events`); } catch (_) { return; }
  $('event-rows').replaceChildren(...events.reverse().map((e) => el('tr', {},
    el('td', { class: 'mono', text: e.timestamp.replace('T', ' ').replace('Z', '') }),
    el('td', { text: e.level }),
    el('td', { text: e.message }))));
}

// ---------------------------------------------------------------- terminal (envd PTY API)
const ENVD_PORT = '49983';

function envelope(obj) {
  const json = new TextEncoder().encode(JSON.stringify(obj));
  const out = new Uint8Array(5 + json.length);
  new DataView(out.buffer).setUint32(1, json.length);
  out.set(json, 5);
  return out;
}

const b64 = {
  encode: (text) => btoa(String.fromCharCode(...new TextEncoder().encode(text))),
  decode: (data) => Uint8Array.from(atob(data), (c) => c.charCodeAt(0)),
};

// What a terminal shows, without colours and cursor moves (a line terminal).
function plain(text) {
  return text.replace(/\x1b\][^\x07\x1b]*(\x07|\x1b\\)/g, '').replace(/\x1b\[[0-9;?]*[ -\/]*[@-~]/g, '')
    .replace(/\x1b[()][0-9A-Za-z]/g, '').replace(/\x1b[=>]/g, '').replace(/\r\n/g, '\n').replace(/\r/g, '').replace(/\x07/g, '');
}

async function openTerminal() {
  const id = $('sbx-id').textContent;
  let info;
  try { info = await api('GET', `/sandboxes/${id}`); } catch (e) { $('term-status').textContent = e.message; return; }
  const headers = { 'E2b-Sandbox-Id': id, 'E2b-Sandbox-Port': ENVD_PORT, 'Authorization': `Basic ${btoa('user:')}` };
  if (info.envdAccessToken) headers['X-Access-Token'] = info.envdAccessToken;
  const abort = new AbortController();
  terminal = { id, headers, abort, pid: null, decoder: new TextDecoder() };
  $('term-out').textContent = '';
  $('term-open').disabled = true;
  $('term-status').textContent = 'connecting…';
  const start = { process: { cmd: '/bin/bash', args: ['-l'], envs: { TERM: 'dumb' } }, pty: { size: { cols: 120, rows: 32 } }, stdin: true };
  let resp;
  try {
    resp = await fetch('/process.Process/Start', { method: 'POST', signal: abort.signal,
      headers: { ...headers, 'Content-Type': 'application/connect+json' }, body: envelope(start) });
  } catch (e) { $('term-status').textContent = `cannot start: ${e.message}`; terminal = null; return; }
  if (!resp.ok) { $('term-status').textContent = `cannot start: ${resp.status} ${await resp.text()}`; terminal = null; return; }
  readTerminal(resp.body.getReader(), terminal);
}

async function readTerminal(reader, t) {
  let buf = new Uint8Array(0);
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      const joined = new Uint8Array(buf.length + value.length);
      joined.set(buf); joined.set(value, buf.length);
      buf = joined;
      while (buf.length >= 5) {
        const len = new DataView(buf.buffer, buf.byteOffset).getUint32(1);
        if (buf.length < 5 + len) break;
        const flags = buf[0];
        const msg = JSON.parse(new TextDecoder().decode(buf.subarray(5, 5 + len)));
        buf = buf.slice(5 + len);
        if (flags & 2) { if (msg.error) termStatus(t, `error: ${msg.error.message}`); continue; }
        onTerminalEvent(t, msg.event || {});
      }
    }
  } catch (e) { if (terminal === t) termStatus(t, `disconnected: ${e.message}`); }
  if (terminal === t) endTerminal(t);
}

function termStatus(t, text) { if (terminal === t) $('term-status').textContent = text; }

function onTerminalEvent(t, ev) {
  if (ev.start) {
    t.pid = ev.start.pid;
    termStatus(t, `bash (pid ${t.pid})`);
    $('term-in').disabled = false; $('term-ctrlc').disabled = false;
    $('term-in').focus();
  }
  if (ev.data && ev.data.pty) {
    const out = $('term-out');
    out.textContent += plain(t.decoder.decode(b64.decode(ev.data.pty), { stream: true }));
    out.scrollTop = out.scrollHeight;
  }
  if (ev.end) termStatus(t, `exited (${ev.end.status || ev.end.exitCode})`);
}

function endTerminal(t) {
  terminal = null;
  $('term-in').disabled = true; $('term-ctrlc').disabled = true;
  $('term-open').disabled = false;
  if (!$('term-status').textContent.startsWith('exited')) $('term-status').textContent += ' (closed)';
}

function closeTerminal() {
  if (!terminal) return;
  terminal.abort.abort();
  terminal = null;
  $('term-in').disabled = true; $('term-ctrlc').disabled = true; $('term-open').disabled = false;
}

async function sendInput(text) {
  const t = terminal;
  if (!t || t.pid === null) return;
  const body = { process: { pid: t.pid }, input: { pty: b64.encode(text) } };
  const resp = await fetch('/process.Process/SendInput', { method: 'POST',
    headers: { ...t.headers, 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
  if (!resp.ok) termStatus(t, `input failed: ${resp.status}`);
}

// ---------------------------------------------------------------- snapshots, templates
async function loadSnapshots() {
  let rows = [];
  try { rows = await api('GET', '/snapshots?limit=100'); } catch (e) { showError('snapshots-empty', e); }
  $('snapshot-rows').replaceChildren(...rows.map((s) => el('tr', {},
    el('td', { class: 'mono', text: s.snapshotID }),
    el('td', {}, ...(s.names || []).map((n) => el('span', { class: 'tag', text: n }))),
    el('td', {}, el('a', { href: `#/sandbox/${s.sourceSandboxID}`, class: 'mono', text: s.sourceSandboxID || '' })),
    el('td', { text: s.templateID || '' }),
    el('td', { text: s.createdAt ? `${ago(s.createdAt)} ago` : '' }),
    el('td', { text: s.sizeBytes !== undefined ? bytes(s.sizeBytes) : '' }),
    el('td', {}, el('button', { 'data-action': 'from-snapshot', 'data-id': s.snapshotID, text: 'New sandbox' }),
      ' ', el('button', { 'data-action': 'delete-snapshot', 'data-id': s.snapshotID, class: 'danger', text: 'Delete' })))));
  $('snapshots-empty').hidden = rows.length > 0;
}

async function loadTemplates() {
  let rows = [];
  try { rows = await api('GET', '/stasis/templates'); } catch (_) { /* shown empty */ }
  $('template-rows').replaceChildren(...rows.map((t) => el('tr', {},
    el('td', { class: 'mono', text: t.name }),
    el('td', { text: t.service ? 'service (starts warm)' : 'plain' }),
    el('td', {}, el('button', { 'data-action': 'from-template', 'data-id': t.name, text: 'New sandbox' })))));
}

async function createFrom(templateID) {
  try {
    const s = await api('POST', '/v2/sandboxes', { templateID, timeout: 300, metadata: { createdBy: 'dashboard' } });
    location.hash = `#/sandbox/${s.sandboxID}`;
  } catch (e) { alert(`create failed: ${e.message}`); }
}

// ---------------------------------------------------------------- wiring
$('login-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  key = $('api-key').value.trim();
  try {
    await api('GET', '/v2/sandboxes?limit=1');
    sessionStorage.setItem(KEY_STORE, key);
    $('login-error').textContent = '';
    $('api-key').value = '';
    route();
  } catch (e) {
    key = null;
    $('login-error').textContent = e.status === 401 ? 'That API key is not valid.' : `Cannot log in: ${e.message}`;
  }
});
$('logout').addEventListener('click', logout);
$('filter-state').addEventListener('change', loadSandboxes);
$('filter-metadata').addEventListener('input', loadSandboxes);
$('filters').addEventListener('submit', (ev) => ev.preventDefault());
$('create').addEventListener('click', () => createFrom($('new-template').value || 'base'));
$('term-open').addEventListener('click', openTerminal);
$('term-ctrlc').addEventListener('click', () => sendInput('\x03'));
$('term-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  const line = $('term-in').value;
  $('term-in').value = '';
  sendInput(`${line}\n`);
});
document.addEventListener('click', (ev) => {
  const b = ev.target.closest('button[data-action]');
  if (!b) return;
  const { action, id } = b.dataset;
  if (action === 'from-snapshot' || action === 'from-template') return createFrom(id);
  if (action === 'delete-snapshot') {
    if (confirm(`Delete snapshot ${id}?`)) api('DELETE', `/templates/${encodeURIComponent(id)}`).then(loadSnapshots, (e) => alert(e.message));
    return;
  }
  act(action, id, b);
});
window.addEventListener('hashchange', route);
route();
