// The nodewarden web view: log in with a token (once, for a session cookie), then one WebSocket
// (/api/web) carries this tab's view: every node as a cell of one canvas, the counts, and the findings
// table for the tab's filter, kept live by coalesced deltas. Every string that came from a peer is put
// into the page as text (textContent, never HTML), with control and direction-override characters
// shown as escapes, so a finding cannot run script, fake lines or reverse what follows it.

type Severity = 'info' | 'warning' | 'critical';
interface Finding {
  id: string;
  node: string;
  check: string;
  severity: Severity;
  subject: string;
  message: string;
  evidence: Record<string, unknown>;
  remedy: string;
  workload?: { namespace?: string; pod?: string; containerName?: string };
  state: string;
  firstSeen: string;
  lastSeen: string;
}
/** [node, worst (-1 none, 0 info, 1 warning, 2 critical), active, connected, silent]; [node, null]: forgotten. */
type NodeCell = [string, number, number, 0 | 1, 0 | 1];
interface NodeInfo {
  node: string;
  connected: boolean;
  agentVersion?: string;
  lastMessageAt?: string;
  disconnectedAt?: string;
  collectorStatus: { name: string; status: string; durationMs: number; detail?: string }[];
}
type Count = { check: string; severity: Severity; count: number };
type Filter = { node?: string; check?: string; severity?: string; pod?: string; text?: string };

const SEVERITY_NAMES: Severity[] = ['info', 'warning', 'critical'];
const rank = (s: Severity) => SEVERITY_NAMES.indexOf(s);
/** Controls (C0, DEL, C1) and bidi marks, embeddings, overrides and isolates. */
const INVISIBLE = /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;

/** A peer's string as harmless visible text: `\x1b`, `\u202e`; newlines and tabs kept. */
export function visible(text: unknown): string {
  return String(text).replace(INVISIBLE, (c) => (c === '\n' || c === '\t' ? c : c.charCodeAt(0) < 0x100 ? `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}` : `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`));
}

function $(id: string): HTMLElement {
  const e = document.getElementById(id);
  if (!e) throw new Error(`#${id} missing`);
  return e;
}

/** An element with text (never HTML) and attributes from our own code. */
function el(tag: string, attrs: Record<string, string> = {}, ...children: (Node | string)[]): HTMLElement {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  for (const c of children) e.append(typeof c === 'string' ? document.createTextNode(visible(c)) : c);
  return e;
}

const state = {
  session: undefined as { role: string; name: string; csrf: string } | undefined,
  nodes: new Map<string, NodeCell>(),
  order: [] as string[],
  orderDirty: true,
  rows: new Map<string, Finding>(),
  sorted: [] as Finding[],
  total: 0,
  counts: [] as Count[],
  node: undefined as NodeInfo | null | undefined,
  filter: {} as Filter,
  limit: 200,
  lastMessageAt: 0,
  ws: undefined as WebSocket | undefined,
  connected: false,
  retryMs: 1000,
  lastRefreshAsk: 0,
};

// ---- session ----

async function api(path: string, init: RequestInit = {}): Promise<Response> {
  const headers = new Headers(init.headers);
  if (init.method && init.method !== 'GET' && state.session) headers.set('x-nodewarden-csrf', state.session.csrf);
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), 20_000);
  try {
    return await fetch(path, { ...init, headers, credentials: 'same-origin', signal: init.signal ?? controller.signal });
  } finally {
    clearTimeout(timer);
  }
}

async function loadSession(): Promise<boolean> {
  const r = await api('/api/session');
  if (!r.ok) return false;
  state.session = (await r.json()) as typeof state.session;
  return true;
}

function showLogin(why = ''): void {
  state.ws?.close();
  state.session = undefined;
  $('main').hidden = true;
  $('logout').hidden = true;
  $('who').textContent = '';
  $('login').hidden = false;
  $('login-error').textContent = why;
  setStatus('disconnected', 'logged out');
}

async function login(ev: SubmitEvent): Promise<void> {
  ev.preventDefault();
  const input = $('token') as HTMLInputElement;
  const r = await api('/api/session', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ token: input.value.trim() }) });
  input.value = '';
  if (!r.ok) return void ($('login-error').textContent = r.status === 401 ? 'That is not a tail or admin token.' : `Refused (${r.status}).`);
  state.session = (await r.json()) as typeof state.session;
  enter();
}

function enter(): void {
  $('login').hidden = true;
  $('main').hidden = false;
  $('logout').hidden = false;
  $('who').textContent = `${visible(state.session?.name)} (${visible(state.session?.role)})`;
  route();
  connect();
}

// ---- live feed ----

function setStatus(kind: 'live' | 'stale' | 'disconnected' | 'connecting', text: string): void {
  const s = $('status');
  s.className = `status ${kind}`;
  s.textContent = text;
  s.dataset['state'] = kind;
}

function connect(): void {
  if (!state.session) return;
  setStatus('connecting', 'connecting');
  const ws = new WebSocket(`${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/api/web`);
  state.ws = ws;
  ws.onopen = () => {
    state.connected = true;
    state.retryMs = 1000;
    sendView();
  };
  ws.onmessage = (ev) => {
    state.lastMessageAt = Date.now();
    if (!state.connected || $('status').dataset['state'] !== 'live') setStatus('live', 'live');
    try {
      onMessage(JSON.parse(String(ev.data)) as Record<string, unknown>);
    } catch (err) {
      console.error('nodewarden: bad message from the aggregator', err);
    }
  };
  ws.onclose = () => {
    if (state.ws !== ws) return;
    state.connected = false;
    state.ws = undefined;
    void loadSession().then(
      (ok) => {
        if (!ok) return showLogin('Your session ended; log in again.');
        const wait = state.retryMs;
        state.retryMs = Math.min(30_000, state.retryMs * 2);
        setStatus('disconnected', `disconnected; reconnecting in ${Math.round(wait / 1000)} s (what you see is as of ${new Date(state.lastMessageAt || Date.now()).toLocaleTimeString()})`);
        setTimeout(connect, wait);
      },
      () => {
        setStatus('disconnected', 'disconnected; the aggregator does not answer');
        setTimeout(connect, state.retryMs);
      },
    );
  };
}

function sendView(): void {
  const ws = state.ws;
  if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ type: 'view', filter: state.filter, limit: state.limit }));
}

// The aggregator says something at least every 5 s: longer silence means what is shown may be old.
setInterval(() => {
  if (state.connected && state.lastMessageAt && Date.now() - state.lastMessageAt > 15_000) setStatus('stale', `stale: nothing from the aggregator for ${Math.round((Date.now() - state.lastMessageAt) / 1000)} s`);
}, 1000);

function onMessage(m: Record<string, unknown>): void {
  if (m['type'] === 'snapshot') {
    state.nodes.clear();
    for (const n of m['nodes'] as NodeCell[]) state.nodes.set(n[0], n);
    state.orderDirty = true;
    state.rows = new Map((m['rows'] as Finding[]).map((f) => [f.id, f]));
    state.total = m['total'] as number;
    state.counts = m['counts'] as Count[];
    if ('node' in m) state.node = m['node'] as NodeInfo | null;
    schedule({ cells: 'all', table: true, counts: true });
  } else if (m['type'] === 'delta') {
    for (const n of m['nodes'] as (NodeCell | [string, null])[]) {
      if (n[1] === null) {
        state.nodes.delete(n[0]);
        state.orderDirty = true;
      } else {
        if (!state.nodes.has(n[0])) state.orderDirty = true;
        state.nodes.set(n[0], n as NodeCell);
        dirtyCells.add(n[0]);
      }
    }
    // Only changes that reach this tab's rows come: a row that resolved or left the filter, or a match
    // that sorts among them. The total comes counted by the aggregator.
    for (const [type, f] of m['changes'] as [string, Finding][]) {
      if (type === 'resolved') state.rows.delete(f.id);
      else state.rows.set(f.id, f);
    }
    if (typeof m['total'] === 'number') state.total = m['total'];
    if (m['counts']) state.counts = m['counts'] as Count[];
    if ('node' in m) state.node = m['node'] as NodeInfo | null;
    schedule({ table: (m['changes'] as unknown[]).length > 0 || 'node' in m || typeof m['total'] === 'number', counts: Boolean(m['counts']) });
  }
}

// ---- rendering, at most once a frame ----

const dirtyCells = new Set<string>();
let pending: { cells?: 'all'; table?: boolean; counts?: boolean } = {};
let frame = 0;
function schedule(what: { cells?: 'all'; table?: boolean; counts?: boolean }): void {
  pending = { cells: pending.cells ?? what.cells, table: pending.table || what.table, counts: pending.counts || what.counts } as typeof pending;
  if (!frame) frame = requestAnimationFrame(render);
}

function render(): void {
  frame = 0;
  const what = pending;
  pending = {};
  if (state.orderDirty) {
    state.order = [...state.nodes.keys()].sort();
    state.orderDirty = false;
    what.cells = 'all';
  }
  drawFleet(what.cells === 'all');
  if (what.counts || what.cells) renderCounts();
  if (what.table) renderTable();
}

const CELL = 10;
const PITCH = 12;
const COLORS = ['#2e7d32', '#1565c0', '#f9a825', '#c62828'];

function drawFleet(all: boolean): void {
  const canvas = $('fleet') as HTMLCanvasElement;
  const width = Math.max(PITCH, Math.min(1200, (canvas.parentElement?.clientWidth ?? 1200) - 4));
  const cols = Math.floor(width / PITCH);
  const rows = Math.max(1, Math.ceil(state.order.length / cols));
  if (canvas.width !== cols * PITCH || canvas.height !== rows * PITCH) {
    canvas.width = cols * PITCH;
    canvas.height = rows * PITCH;
    all = true;
  }
  canvas.dataset['cols'] = String(cols);
  const ctx = canvas.getContext('2d');
  if (!ctx) return;
  const paint = (i: number) => {
    const n = state.nodes.get(state.order[i]!);
    if (!n) return;
    const x = (i % cols) * PITCH;
    const y = Math.floor(i / cols) * PITCH;
    ctx.clearRect(x, y, PITCH, PITCH);
    ctx.fillStyle = n[4] ? '#424242' : COLORS[n[1] + 1]!;
    ctx.fillRect(x, y, CELL, CELL);
    if (!n[3] && !n[4]) {
      // agent away (not yet silent): a grey inner square over its last colour
      ctx.fillStyle = '#9e9e9e';
      ctx.fillRect(x + 3, y + 3, CELL - 6, CELL - 6);
    }
  };
  if (all) {
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    for (let i = 0; i < state.order.length; i++) paint(i);
  } else {
    const index = new Map<string, number>();
    if (dirtyCells.size > 0) state.order.forEach((n, i) => dirtyCells.has(n) && index.set(n, i));
    for (const i of index.values()) paint(i);
  }
  dirtyCells.clear();
}

function nodeAt(ev: MouseEvent): string | undefined {
  const canvas = ev.currentTarget as HTMLCanvasElement;
  const cols = Number(canvas.dataset['cols'] ?? 1);
  const r = canvas.getBoundingClientRect();
  const col = Math.floor((ev.clientX - r.left) / PITCH);
  const row = Math.floor((ev.clientY - r.top) / PITCH);
  if (col < 0 || col >= cols) return undefined;
  return state.order[row * cols + col];
}

function nodeLink(node: string): HTMLElement {
  return el('a', { href: `#/node/${encodeURIComponent(node)}` }, node);
}

function renderCounts(): void {
  const bySev: Record<Severity, number> = { info: 0, warning: 0, critical: 0 };
  const byCheck = new Map<string, Record<Severity, number>>();
  for (const c of state.counts) {
    bySev[c.severity] += c.count;
    const row = byCheck.get(c.check) ?? { info: 0, warning: 0, critical: 0 };
    row[c.severity] += c.count;
    byCheck.set(c.check, row);
  }
  let silent = 0;
  let away = 0;
  for (const n of state.nodes.values()) {
    if (n[4]) silent++;
    else if (!n[3]) away++;
  }
  $('counts').replaceChildren(
    el('span', { id: 'count-nodes' }, `${state.nodes.size} nodes`),
    el('span', { id: 'count-critical', class: 'sev critical' }, `${bySev.critical} critical`),
    el('span', { id: 'count-warning', class: 'sev warning' }, `${bySev.warning} warning`),
    el('span', { id: 'count-info', class: 'sev info' }, `${bySev.info} info`),
    el('span', { id: 'count-silent' }, `${silent} silent`),
    el('span', {}, `${away} disconnected`),
  );
  const checks = [...byCheck].sort((a, b) => b[1].critical - a[1].critical || b[1].warning - a[1].warning || b[1].info - a[1].info);
  ($('checks').querySelector('tbody') as HTMLElement).replaceChildren(...checks.map(([check, c]) => el('tr', {}, el('td', {}, check), el('td', {}, String(c.critical)), el('td', {}, String(c.warning)), el('td', {}, String(c.info)))));
  const worst = [...state.nodes.values()].filter((n) => n[4] || n[1] >= 1).sort((a, b) => b[4] - a[4] || b[1] - a[1] || b[2] - a[2]).slice(0, 20);
  $('worst').replaceChildren(...worst.map((n) => el('li', { class: n[4] ? 'silent' : SEVERITY_NAMES[n[1]] ?? '', 'data-node': n[0] }, nodeLink(n[0]), ` ${n[4] ? 'SILENT' : (SEVERITY_NAMES[n[1]] ?? '').toUpperCase()}, ${n[2]} active`)));
}

function sortRows(): Finding[] {
  const rows = [...state.rows.values()].sort((a, b) => rank(b.severity) - rank(a.severity) || (a.node < b.node ? -1 : a.node > b.node ? 1 : 0) || (a.check < b.check ? -1 : a.check > b.check ? 1 : 0) || (a.subject < b.subject ? -1 : 1));
  // Rows past the limit are dropped here; when fewer are left than exist, ask for a fresh view.
  for (const f of rows.slice(state.limit)) state.rows.delete(f.id);
  const kept = rows.slice(0, state.limit);
  if (kept.length < Math.min(state.limit, state.total) && Date.now() - state.lastRefreshAsk > 5000) {
    state.lastRefreshAsk = Date.now();
    state.ws?.send(JSON.stringify({ type: 'refresh' }));
  }
  return kept;
}

function renderTable(): void {
  const rows = sortRows();
  state.sorted = rows;
  if (currentRoute().page === 'node') return renderNodePage(rows);
  $('table-summary').textContent = `${state.total} matching finding(s)${state.total > rows.length ? `, the ${rows.length} most severe shown` : ''}`;
  const body = $('table').querySelector('tbody') as HTMLElement;
  body.replaceChildren(
    ...rows.map((f) => el('tr', { 'data-id': f.id, class: f.severity }, el('td', { class: `sev ${f.severity}` }, f.severity), el('td', {}, nodeLink(f.node)), el('td', {}, f.check), el('td', {}, f.subject), el('td', {}, f.message), el('td', {}, f.firstSeen))),
  );
}

// ---- node page ----

function copyButton(text: string): HTMLElement {
  const b = el('button', { type: 'button', class: 'copy' }, 'Copy');
  b.addEventListener('click', () => {
    void navigator.clipboard.writeText(text).then(
      () => (b.textContent = 'Copied'),
      () => (b.textContent = 'Copy failed: select the command'),
    );
  });
  return b;
}

/** One of the largest consumers of a filesystem, as a disk finding's evidence names it (topConsumers). */
interface DiskConsumer {
  filesystem: string;
  kind: string;
  bytes: number;
  path: string;
  pod?: string;
  container?: string;
  ratePerMinute?: number;
}

/** The checks whose findings carry a measured filesystem's largest consumers (the agent's fillers view). */
const CONSUMER_CHECKS = new Set(['disk.usage', 'disk.eviction', 'disk.imageGc']);

/**
 * Pure: the disk consumers the node's disk findings name, largest first, one row per filesystem and
 * path. The evidence came from an agent: anything not of the expected shape is left out, and at most 10
 * a filesystem are kept.
 */
export function diskConsumers(rows: readonly Pick<Finding, 'check' | 'subject' | 'evidence'>[]): DiskConsumer[] {
  const seen = new Map<string, DiskConsumer>();
  for (const f of rows) {
    const list = CONSUMER_CHECKS.has(f.check) ? f.evidence?.['topConsumers'] : undefined;
    if (!Array.isArray(list)) continue;
    for (const raw of list.slice(0, 10)) {
      if (typeof raw !== 'object' || raw === null) continue;
      const c = raw as Record<string, unknown>;
      if (typeof c['kind'] !== 'string' || typeof c['path'] !== 'string' || typeof c['bytes'] !== 'number' || !Number.isFinite(c['bytes']) || c['bytes'] < 0) continue;
      const row: DiskConsumer = { filesystem: f.subject, kind: c['kind'].slice(0, 64), bytes: c['bytes'], path: c['path'].slice(0, 4096) };
      if (typeof c['pod'] === 'string') row.pod = c['pod'].slice(0, 300);
      if (typeof c['container'] === 'string') row.container = c['container'].slice(0, 300);
      if (typeof c['ratePerMinute'] === 'number' && Number.isFinite(c['ratePerMinute'])) row.ratePerMinute = c['ratePerMinute'];
      const key = `${row.filesystem}\0${row.path}`;
      const had = seen.get(key);
      if (!had || (row.ratePerMinute !== undefined && had.ratePerMinute === undefined)) seen.set(key, row);
    }
  }
  return [...seen.values()].sort((a, b) => (a.filesystem < b.filesystem ? -1 : a.filesystem > b.filesystem ? 1 : b.bytes - a.bytes));
}

const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
/** Bytes as people read them: 1.5 GiB. */
export function bytesText(n: number): string {
  let i = 0;
  let v = Math.abs(n);
  while (v >= 1024 && i < UNITS.length - 1) {
    v /= 1024;
    i++;
  }
  return `${n < 0 ? '-' : ''}${i === 0 ? v : v.toFixed(1)} ${UNITS[i]}`;
}

function renderConsumers(rows: readonly Finding[]): void {
  const consumers = diskConsumers(rows);
  const table = $('consumers');
  table.hidden = consumers.length === 0;
  (table.querySelector('tbody') as HTMLElement).replaceChildren(
    ...consumers.map((c) => el('tr', {}, el('td', {}, c.filesystem), el('td', {}, c.kind), el('td', { class: 'num' }, bytesText(c.bytes)), el('td', { class: 'num' }, c.ratePerMinute === undefined ? '' : `${c.ratePerMinute >= 0 ? '+' : ''}${bytesText(c.ratePerMinute)}/min`), el('td', {}, c.pod ?? '-'), el('td', {}, c.container ?? '-'), el('td', {}, c.path))),
  );
  $('consumers-note').textContent = consumersNote(rows, consumers, state.total > rows.length);
}

/**
 * Pure: what the note under the consumers table says. The agent measures kubelet's filesystems (nodefs,
 * imagefs) only, in the background, while one is over its warning: a disk.usage or disk.eviction finding
 * about another filesystem, or one before the first measurement, names no consumers; disk.imageGc may
 * fire on kubelet's own Events with no filesystem over anything. `partial`: the rows are the node's most
 * severe findings, not all of them.
 */
export function consumersNote(rows: readonly Pick<Finding, 'check' | 'subject'>[], consumers: readonly Pick<DiskConsumer, 'filesystem'>[], partial = false): string {
  const du = 'On the node, nodewarden du gives the whole table.';
  const names = (list: readonly string[]) => list.slice(0, 3).map((x) => { const v = visible(x); return v.length > 80 ? `${v.slice(0, 79)}…` : v; }).join(', ') + (list.length > 3 ? ` and ${list.length - 3} more` : '');
  const measured = new Set(consumers.map((c) => c.filesystem));
  const over = [...new Set(rows.filter((f) => f.check === 'disk.usage' || f.check === 'disk.eviction').map((f) => f.subject))];
  const unmeasured = over.filter((x) => !measured.has(x));
  const gc = [...new Set(rows.filter((f) => f.check === 'disk.imageGc').map((f) => f.subject))].filter((x) => !measured.has(x) && !over.includes(x));
  const parts: string[] = [];
  if (consumers.length > 0) parts.push("The largest consumers of the filesystems the agent measured (kubelet's nodefs and imagefs, while one is over its warning), from its disk findings.");
  if (unmeasured.length > 0) {
    const one = unmeasured.length === 1;
    parts.push(`${names(unmeasured)} ${one ? 'is' : 'are'} over ${one ? 'its' : 'their'} warning, and no finding names what fills ${one ? 'it' : 'them'}: the agent measures only kubelet's filesystems (nodefs, imagefs), in the background, so the first measurement may still be under way.`);
  }
  if (gc.length > 0) parts.push(`kubelet's image garbage collection needs attention on ${names(gc)}, and no finding names what fills it yet.`);
  if (parts.length === 0) parts.push(partial ? 'No disk finding among the most severe findings shown here, so no consumers to list.' : 'No filesystem on this node is over its warning, so the agent has measured none.');
  return `${parts.join(' ')} ${du}`;
}

function renderNodePage(rows: Finding[]): void {
  const name = currentRoute().arg;
  const info = state.node;
  $('node-title').textContent = visible(name);
  $('node-state').textContent = info === null ? 'This node is not known to the aggregator.' : info ? (info.connected ? `agent ${visible(info.agentVersion ?? '')} connected, last message ${visible(info.lastMessageAt ?? '')}` : `agent disconnected since ${visible(info.disconnectedAt ?? info.lastMessageAt ?? '?')}`) : '';
  ($('collectors').querySelector('tbody') as HTMLElement).replaceChildren(
    ...(info?.collectorStatus ?? []).map((c) => el('tr', {}, el('td', {}, c.name), el('td', {}, c.status), el('td', {}, `${c.durationMs} ms`), el('td', {}, c.detail ?? ''))),
  );
  $('node-findings').replaceChildren(
    ...rows.map((f) =>
      el(
        'article',
        { class: `finding ${f.severity}`, 'data-id': f.id },
        el('h4', {}, el('span', { class: `sev ${f.severity}` }, f.severity), ` ${visible(f.check)}  ${visible(f.subject)}`),
        el('p', { class: 'peer message' }, f.message),
        el('p', { class: 'remedy' }, 'next: ', el('code', { class: 'peer' }, f.remedy), ' ', copyButton(f.remedy)),
        el('details', {}, el('summary', {}, 'evidence'), el('pre', { class: 'peer' }, JSON.stringify(f.evidence, null, 2))),
        el('p', { class: 'note' }, `since ${visible(f.firstSeen)}, last seen ${visible(f.lastSeen)}`),
      ),
    ),
  );
  if (rows.length === 0) $('node-findings').replaceChildren(el('p', {}, 'No active findings.'));
  renderConsumers(rows);
}

// ---- prune (admins): a dry run first, then a confirm ----

let dryRunFor: { node: string; untilMs: number } | undefined;

async function prune(dryRun: boolean): Promise<void> {
  const node = currentRoute().arg;
  const untilMs = Math.max(0, Number(($('prune-hours') as HTMLInputElement).value) || 0) * 3_600_000;
  if (!dryRun && (!dryRunFor || dryRunFor.node !== node || dryRunFor.untilMs !== untilMs)) return;
  const confirm = $('prune-confirm') as HTMLButtonElement;
  confirm.disabled = true;
  const lines = $('prune-lines');
  lines.replaceChildren();
  $('prune-state').textContent = dryRun ? 'dry run: asking the agent...' : 'pruning...';
  const r = await api(`/api/nodes/${encodeURIComponent(node)}/prune`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ untilMs, dryRun }), signal: AbortSignal.timeout(16 * 60_000) });
  if (!r.ok || !r.body) {
    const text = await r.text().catch(() => '');
    $('prune-state').textContent = `refused (${r.status}): ${visible(text.slice(0, 300))}`;
    return;
  }
  let buffer = '';
  let would = 0;
  const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
  for (;;) {
    const { value, done } = await reader.read();
    if (value) buffer += value;
    let nl: number;
    while ((nl = buffer.indexOf('\n')) >= 0) {
      const raw = buffer.slice(0, nl);
      buffer = buffer.slice(nl + 1);
      let line: Record<string, unknown>;
      try {
        line = JSON.parse(raw) as Record<string, unknown>;
      } catch {
        continue;
      }
      if (line['type'] === 'progress') {
        if (line['state'] === 'would-remove') would++;
        lines.append(el('li', { class: `prune-${visible(line['state'])}` }, `${visible(line['state'])}  ${visible(line['image'])}  ${Math.round(Number(line['size']) / 1024)} KiB${line['reason'] ? `  (${visible(line['reason'])})` : ''}`));
      } else if (line['type'] === 'result') {
        const refused = line['refused'];
        $('prune-state').textContent = refused ? `refused: ${visible(refused)}` : dryRun ? `dry run: ${would} image(s) would be removed. Confirm to remove them.` : `removed ${visible(line['removed'])} image(s), ${Math.round(Number(line['bytes']) / 1048576)} MiB reclaimed${(line['errors'] as unknown[]).length ? `; ${(line['errors'] as unknown[]).length} error(s)` : ''}`;
        if (dryRun && !refused && would > 0) {
          dryRunFor = { node, untilMs };
          confirm.disabled = false;
        }
      } else if (line['type'] === 'error') $('prune-state').textContent = `error: ${visible(line['message'])}`;
    }
    if (done) break;
  }
  if (!dryRun) dryRunFor = undefined;
}

// ---- pod view: the `why` answer ----

async function renderPod(subject: string): Promise<void> {
  $('pod-title').textContent = `why ${visible(subject)}`;
  const answer = $('pod-answer');
  answer.replaceChildren(el('p', {}, 'asking...'));
  const [fr, nr] = await Promise.all([api('/api/findings?check=pod.stuck'), api('/api/nodes')]);
  if (!fr.ok || !nr.ok) return void answer.replaceChildren(el('p', { class: 'error' }, `the aggregator answered ${fr.status}/${nr.status}`));
  const finding = ((await fr.json()) as Finding[]).find((f) => f.subject === subject && f.state === 'firing');
  const nodes = (await nr.json()) as NodeInfo[];
  if (finding) {
    const walk = (finding.evidence['walk'] ?? []) as { cause: string; checked: boolean; found: boolean; summary: string }[];
    return void answer.replaceChildren(
      el('p', {}, el('span', { class: 'sev critical' }, 'stuck'), ' reported by node ', nodeLink(finding.node)),
      el('p', { class: 'peer' }, finding.message),
      el('p', { class: 'remedy' }, 'next: ', el('code', { class: 'peer' }, finding.remedy), ' ', copyButton(finding.remedy)),
      el('h3', {}, "What nodewarden checked, in the runbooks' order"),
      el('ol', {}, ...walk.map((st) => el('li', { class: st.found ? 'found' : '' }, `${visible(st.cause)}: ${st.found ? 'FOUND' : st.checked ? 'ruled out' : 'not known'}. ${visible(st.summary)}`))),
    );
  }
  // No finding is "not stuck" only where an agent watches pods.
  const blind = nodes.filter((n) => !(n.connected && n.collectorStatus.some((c) => c.name === 'pods' && c.status === 'ok')));
  const watching = nodes.length - blind.length;
  answer.replaceChildren(
    el('p', {}, watching === 0 ? 'Unknown: no agent watches pods, so nothing says whether it is stuck.' : 'Not stuck: no agent reports it (no pod.stuck finding).'),
    ...(blind.length > 0 ? [el('p', { class: 'note' }, `Not known on ${blind.length} node(s) whose agent does not watch pods: ${blind.slice(0, 5).map((n) => visible(n.node)).join(', ')}${blind.length > 5 ? ', ...' : ''}.`)] : []),
  );
}

// ---- routes: #/ (overview), #/node/NAME, #/pod/NAMESPACE/POD ----

function currentRoute(): { page: 'overview' | 'node' | 'pod'; arg: string } {
  const h = location.hash.replace(/^#\/?/, '');
  const [page, ...rest] = h.split('/');
  let arg = '';
  try {
    arg = rest.map(decodeURIComponent).join('/');
  } catch {
    return { page: 'overview', arg: '' };
  }
  if (page === 'node' && arg) return { page: 'node', arg };
  if (page === 'pod' && arg) return { page: 'pod', arg };
  return { page: 'overview', arg: '' };
}

function readFilters(): Filter {
  const form = $('filters') as HTMLFormElement;
  const f: Filter = {};
  for (const k of ['node', 'check', 'severity', 'pod', 'text'] as const) {
    const v = (form.elements.namedItem(k) as HTMLInputElement | null)?.value.trim();
    if (v) f[k] = v.slice(0, 256);
  }
  return f;
}

function route(): void {
  const r = currentRoute();
  $('overview').hidden = r.page !== 'overview';
  $('findings').hidden = r.page !== 'overview';
  $('node-page').hidden = r.page !== 'node';
  $('pod-page').hidden = r.page !== 'pod';
  $('prune').hidden = !(r.page === 'node' && state.session?.role === 'admin');
  $('prune-lines').replaceChildren();
  $('prune-state').textContent = '';
  ($('prune-confirm') as HTMLButtonElement).disabled = true;
  dryRunFor = undefined;
  if (r.page === 'node') {
    state.filter = { node: r.arg };
    state.limit = 2000;
    state.node = undefined;
    $('node-findings').replaceChildren();
  } else {
    state.filter = readFilters();
    state.limit = 200;
  }
  state.rows.clear();
  sendView();
  if (r.page === 'pod') void renderPod(r.arg);
}

function start(): void {
  $('login-form').addEventListener('submit', (ev) => void login(ev as SubmitEvent));
  $('logout').addEventListener('click', () => void api('/api/session', { method: 'DELETE' }).finally(() => showLogin()));
  let debounce = 0;
  $('filters').addEventListener('input', () => {
    clearTimeout(debounce);
    debounce = window.setTimeout(() => {
      state.filter = readFilters();
      sendView();
    }, 250);
  });
  $('filters').addEventListener('submit', (ev) => ev.preventDefault());
  $('pod-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const v = ($('pod-input') as HTMLInputElement).value.trim();
    const [ns, pod] = v.includes('/') ? v.split('/', 2) : ['default', v];
    if (pod) location.hash = `#/pod/${encodeURIComponent(ns!)}/${encodeURIComponent(pod)}`;
  });
  const canvas = $('fleet') as HTMLCanvasElement;
  canvas.addEventListener('mousemove', (ev) => {
    const n = nodeAt(ev);
    const cell = n ? state.nodes.get(n) : undefined;
    canvas.title = cell ? `${visible(cell[0])}: ${cell[4] ? 'silent' : cell[1] < 0 ? 'healthy' : SEVERITY_NAMES[cell[1]]}, ${cell[2]} active` : '';
  });
  canvas.addEventListener('click', (ev) => {
    const n = nodeAt(ev);
    if (n) location.hash = `#/node/${encodeURIComponent(n)}`;
  });
  $('prune-dry').addEventListener('click', () => void prune(true));
  $('prune-confirm').addEventListener('click', () => void prune(false));
  window.addEventListener('hashchange', () => state.session && route());
  window.addEventListener('resize', () => schedule({ cells: 'all' }));
  void loadSession().then(
    (ok) => (ok ? enter() : showLogin()),
    () => showLogin('The aggregator does not answer.'),
  );
}

start();
