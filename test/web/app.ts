// @live shared: drives headless Chromium (Debian's chromium, no browser download) against a real aggregator on loopback; the prune case uses a real agent and dockerd, pruning only its own labelled image (no other shared file makes one): it may run beside another shared file
// The web view in a real browser: log in with a tail token, a node's cell turns red when its agent
// sends a critical finding and back when it resolves, the table filters, a node page shows a remedy
// that copies, a hostile finding renders as text while the CSP blocks inline script (violations are
// listened for), a tail session cannot prune, an admin prunes a real agent's image after a dry run,
// and the page says when it is disconnected. Screenshots go to test-artifacts/web/.
import t, { type Test } from 'tap';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import type { ChildProcess } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import WebSocket from 'ws';
import { pino } from 'pino';
import { chromium, type Browser, type Page } from 'playwright-core';
import { Aggregator } from '../../aggregator/server.js';
import type { Token } from '../../aggregator/auth.js';
import { finding } from '../helpers/findings.js';
import { requireLive } from '../helpers/live.js';
import { QUIET_COLLECTORS, run, until } from '../helpers/processes.js';
import { dockerTry, makeLabelledImage, requireRuntime } from '../helpers/runtime.js';

const CHROMIUM = process.env['NODEWARDEN_CHROMIUM'] ?? '/usr/bin/chromium';
const ARTIFACTS = path.resolve('test-artifacts/web');
const TOKENS: Token[] = [
  { role: 'agent', name: 'agents', secret: 'agent-token-0123456789' },
  { role: 'tail', name: 'ops', secret: 'tail-token-0123456789' },
  { role: 'admin', name: 'alice', secret: 'admin-token-0123456789' },
];
const COLORS = { none: [46, 125, 50], warning: [249, 168, 37], critical: [198, 40, 40], silent: [66, 66, 66] } as const;

async function launch(t: Test): Promise<Browser | undefined> {
  if (!requireLive(t, { paths: [CHROMIUM] })) return undefined;
  // As root Chromium needs --no-sandbox; the page is ours and on loopback.
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'], timeout: 60_000 });
  t.teardown(() => browser.close());
  mkdirSync(ARTIFACTS, { recursive: true });
  return browser;
}

async function startAggregator(t: Test) {
  const agg = new Aggregator({ host: '127.0.0.1', port: 0, tokens: TOKENS, version: 'test', log: pino({ level: 'silent' }), heartbeatMs: 60_000, silentAfterMs: 1_000, web: { flushMs: 100 } });
  const { port } = await agg.start();
  t.teardown(() => agg.stop());
  return { agg, port, base: `http://127.0.0.1:${port}` };
}

async function fakeAgent(t: Test, port: number, node: string) {
  const ws = new WebSocket(`ws://127.0.0.1:${port}/api/agent`, { headers: { authorization: 'Bearer agent-token-0123456789' } });
  await new Promise((r) => ws.once('open', r));
  const welcome = new Promise((r) => ws.once('message', r));
  ws.send(JSON.stringify({ v: 1, type: 'hello', protocol: 1, node, agentVersion: 'test', collectors: ['disk'] }));
  await welcome;
  ws.send(JSON.stringify({ v: 1, type: 'status', collectors: [{ name: 'disk', status: 'ok', durationMs: 12 }] }));
  t.teardown(() => ws.close());
  return { close: () => ws.close(), send: (type: 'firing' | 'resolved' | 'updated', f: ReturnType<typeof finding>) => ws.send(JSON.stringify({ v: 1, type: 'delta', transitions: [{ type, finding: type === 'resolved' ? { ...f, state: 'resolved' } : f }] })) };
}

/** A page that records CSP violations and script errors from its first moment. */
async function newPage(browser: Browser, base: string): Promise<{ page: Page; errors: string[] }> {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: base });
  const page = await context.newPage();
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(e.message));
  await page.addInitScript(() => {
    const w = window as unknown as { __csp: string[] };
    w.__csp = [];
    document.addEventListener('securitypolicyviolation', (e) => w.__csp.push(`${e.violatedDirective} ${e.blockedURI}`));
  });
  return { page, errors };
}

async function logIn(page: Page, base: string, token: string): Promise<void> {
  await page.goto(`${base}/`);
  await page.locator('#token').fill(token);
  await page.locator('#login-form button[type=submit]').click();
  await page.waitForSelector('#main:not([hidden])');
  await page.waitForSelector('#status[data-state=live]');
}

/** The colour of the i-th cell (nodes in name order) of the fleet canvas. */
function cellColor(page: Page, i: number): Promise<number[]> {
  return page.evaluate((i) => {
    const c = document.getElementById('fleet') as HTMLCanvasElement;
    const cols = Number(c.dataset['cols']);
    const d = c.getContext('2d')!.getImageData((i % cols) * 12 + 1, Math.floor(i / cols) * 12 + 1, 1, 1).data;
    return [d[0]!, d[1]!, d[2]!];
  }, i);
}

async function cellIs(page: Page, i: number, rgb: readonly number[], what: string): Promise<void> {
  await until(async () => (await cellColor(page, i)).join() === rgb.join(), 15_000, what);
}

const shot = (page: Page, name: string) => page.screenshot({ path: path.join(ARTIFACTS, `${name}.png`), fullPage: true });

t.test('a tail token: live cells, filters, a node page, a remedy copied, hostile text inert under the CSP', async (t) => {
  const browser = await launch(t);
  if (!browser) return;
  const { agg, port, base } = await startAggregator(t);
  const a = await fakeAgent(t, port, 'node-a');
  const b = await fakeAgent(t, port, 'node-b');
  const inodes = finding('node-b', 'disk.inodes', '/var', 'warning', { message: '/var has used 91% of its inodes', remedy: "find /var -xdev -type f | cut -d/ -f1-3 | sort | uniq -c | sort -n | tail", evidence: { usedPercent: 91 } });
  b.send('firing', inodes);
  await until(() => agg.fleet.active().length === 1, 10_000, 'the finding to arrive');

  const { page, errors } = await newPage(browser, base);
  await logIn(page, base, 'tail-token-0123456789');
  await page.waitForFunction(() => document.getElementById('count-nodes')?.textContent === '2 nodes');
  await cellIs(page, 0, COLORS.none, 'node-a healthy');
  await cellIs(page, 1, COLORS.warning, 'node-b amber');

  const full = finding('node-a', 'disk.usage', '/', 'critical', { message: '/ is 97% full', remedy: 'docker image prune -a --filter until=72h' });
  a.send('firing', full);
  await cellIs(page, 0, COLORS.critical, 'node-a red when its agent sends a critical finding');
  t.equal(await page.locator('#worst li[data-node="node-a"]').getAttribute('class'), 'critical', 'listed first among the worst nodes');
  t.equal(await page.locator('#count-critical').textContent(), '1 critical');
  await shot(page, 'overview-critical');
  a.send('resolved', full);
  await cellIs(page, 0, COLORS.none, 'node-a back to healthy when it resolves');
  t.pass('node-a went red and back');

  // Filters: by node, then by text; the table is sorted most severe first.
  a.send('firing', finding('node-a', 'sockets.process', 'pid:42', 'info', { message: 'pid 42 holds 900 sockets' }));
  await page.waitForFunction(() => document.querySelectorAll('#table tbody tr').length === 2);
  t.same(await page.locator('#table tbody tr td.sev').allTextContents(), ['warning', 'info'], 'most severe first');
  await page.locator('#filters input[name=node]').fill('node-b');
  await page.waitForFunction(() => document.querySelectorAll('#table tbody tr').length === 1);
  t.match(await page.locator('#table tbody').textContent(), /disk\.inodes/);
  await page.locator('#filters input[name=node]').fill('');
  await page.locator('#filters input[name=text]').fill('SOCKETS');
  await page.waitForFunction(() => document.querySelectorAll('#table tbody tr').length === 1 && document.querySelector('#table tbody')!.textContent!.includes('sockets.process'));
  await page.locator('#filters input[name=text]').fill('');
  await page.waitForFunction(() => document.querySelectorAll('#table tbody tr').length === 2);

  // A hostile finding: markup, terminal escapes and a direction override, all shown as text.
  const hostile = finding('node-b', 'kernel.oom', '<b>bold</b>', 'critical', {
    message: '<script>window.__pwned=1</script><img src=x onerror="window.__pwned=2">\u001b[2J\u001b[31mRED\u202eevil.exe',
    remedy: '<img src=x onerror="window.__pwned=3">',
  });
  b.send('firing', hostile);
  await page.waitForFunction(() => document.querySelector('#table tbody')!.textContent!.includes('<script>window.__pwned=1</script>'));
  t.equal(await page.locator('#table img, #table script, #table b, #table tbody [onerror]').count(), 0, 'no element came from the finding');
  const text = (await page.locator('#table tbody tr[data-id] >> nth=0').textContent()) ?? '';
  t.match(text, /\\x1b\[2J\\x1b\[31mRED\\u202eevil\.exe/, 'escape and override characters shown, not obeyed');
  t.notMatch(text, /[\u001b\u202e]/, 'no control or override character reaches the page');
  await shot(page, 'hostile-finding');

  // The CSP: an inline script is blocked (and reported), and so is eval.
  await page.evaluate(() => {
    const s = document.createElement('script');
    s.textContent = 'window.__inline = 1';
    document.body.append(s);
  });
  await page.waitForFunction(() => (window as unknown as { __csp: string[] }).__csp.some((v) => v.startsWith('script-src')));
  t.same(await page.evaluate(() => [(window as unknown as { __inline?: number }).__inline, (window as unknown as { __pwned?: number }).__pwned]), [undefined, undefined], 'neither the injected script nor the finding ran');
  // An inline event handler too. (eval cannot be tried from here: code run through the DevTools protocol
  // is exempt from the page's CSP; test/aggregator/web.ts holds the header to no 'unsafe-eval'.)
  await page.evaluate(() => {
    const button = document.createElement('button');
    button.setAttribute('onclick', 'window.__handler = 1');
    document.body.append(button);
    button.click();
    button.remove();
  });
  await page.waitForFunction(() => (window as unknown as { __csp: string[] }).__csp.some((v) => v.startsWith('script-src-attr')));
  t.equal(await page.evaluate(() => (window as unknown as { __handler?: number }).__handler), undefined, 'an inline handler does not run');

  // The node page: message, evidence, remedy with a copy button, collectors; no prune for a tail session.
  await page.locator('#table a', { hasText: 'node-b' }).first().click();
  await page.waitForFunction(() => location.hash === '#/node/node-b' && document.querySelectorAll('#node-findings article').length === 2);
  t.equal(await page.locator('#node-title').textContent(), 'node-b');
  const card = page.locator(`#node-findings article[data-id="${inodes.id}"]`);
  t.equal(await card.locator('.message').textContent(), '/var has used 91% of its inodes');
  t.match(await card.locator('pre').textContent(), /"usedPercent": 91/);
  t.same(await page.locator('#collectors tbody td').allTextContents(), ['disk', 'ok', '12 ms', ''], "its collectors' status");
  await card.locator('button.copy').click();
  await page.waitForFunction((id) => document.querySelector(`article[data-id="${id}"] button.copy`)?.textContent === 'Copied', inodes.id);
  t.equal(await page.evaluate(() => navigator.clipboard.readText()), inodes.remedy, 'the remedy is on the clipboard');
  t.ok(await page.locator('#prune').isHidden(), 'no prune for a tail session');
  const refused = await page.evaluate(async () => {
    const s = (await (await fetch('/api/session')).json()) as { csrf: string };
    return (await fetch('/api/nodes/node-b/prune', { method: 'POST', headers: { 'content-type': 'application/json', 'x-nodewarden-csrf': s.csrf }, body: '{"dryRun":true}' })).status;
  });
  t.equal(refused, 403, 'and the API refuses a tail session even with its CSRF value');

  // Disk consumers: none measured until a disk finding names them; then a table, largest first, the
  // agent's strings as text and what is not of the expected shape left out.
  t.ok(await page.locator('#consumers').isHidden(), 'no consumers table before any is measured');
  t.match(await page.locator('#consumers-note').textContent(), /has measured none\. On the node, nodewarden du gives the whole table/);
  // A filesystem over its warning that the agent does not measure (not nodefs or imagefs): the note says
  // so rather than "none is over its warning".
  const data = finding('node-b', 'disk.usage', '/data', 'warning', { message: '/data is 90% full', evidence: { usedPercent: 90 } });
  b.send('firing', data);
  await page.waitForFunction(() => /^\/data is over its warning/.test(document.getElementById('consumers-note')?.textContent ?? ''));
  t.match(await page.locator('#consumers-note').textContent(), /^\/data is over its warning, and no finding names what fills it: the agent measures only kubelet's filesystems/);
  t.ok(await page.locator('#consumers').isHidden(), 'and no table');
  b.send('resolved', data);
  await page.waitForFunction(() => /has measured none/.test(document.getElementById('consumers-note')?.textContent ?? ''));
  // disk.imageGc on kubelet's Events alone: no filesystem is said to be over its warning.
  const gc = finding('node-b', 'disk.imageGc', '/var/lib/docker', 'warning', { message: 'kubelet could not free space', evidence: {} });
  b.send('firing', gc);
  await page.waitForFunction(() => /image garbage collection/.test(document.getElementById('consumers-note')?.textContent ?? ''));
  t.match(await page.locator('#consumers-note').textContent(), /^kubelet's image garbage collection needs attention on \/var\/lib\/docker, and no finding names what fills it yet\. On the node/);
  b.send('resolved', gc);
  await page.waitForFunction(() => /has measured none/.test(document.getElementById('consumers-note')?.textContent ?? ''));
  b.send('firing', finding('node-b', 'disk.usage', '/var', 'warning', {
    message: '/var is 88% full. Largest: ...',
    evidence: { usedPercent: 88, topConsumers: [
      { kind: 'logs', bytes: 41_943_040, path: '/var/log/pods/shop_web-1_u1/web/0.log', pod: 'shop/web-1', container: 'web', ratePerMinute: 1_048_576 },
      { kind: 'emptydir', bytes: 3_221_225_472, path: '/var/lib/kubelet/pods/u2/volumes/kubernetes.io~empty-dir/cache', pod: 'data/ingest-3\u202eexe.sh', container: null, ratePerMinute: null },
      { kind: 'writable-layer', bytes: 'a lot', path: '/var/lib/docker/overlay2/x/diff' },
      'not a consumer',
    ] },
  }));
  await page.waitForFunction(() => document.querySelectorAll('#consumers tbody tr').length === 2);
  const consumerRows = await page.locator('#consumers tbody tr').evaluateAll((trs) => trs.map((tr) => [...tr.querySelectorAll('td')].map((td) => td.textContent)));
  t.same(consumerRows, [
    ['/var', 'emptydir', '3.0 GiB', '', 'data/ingest-3\\u202eexe.sh', '-', '/var/lib/kubelet/pods/u2/volumes/kubernetes.io~empty-dir/cache'],
    ['/var', 'logs', '40.0 MiB', '+1.0 MiB/min', 'shop/web-1', 'web', '/var/log/pods/shop_web-1_u1/web/0.log'],
  ], 'largest first, with pod, container and growth; the override shown, not obeyed; the malformed ones left out');
  t.match(await page.locator('#consumers-note').textContent(), /largest consumers of the filesystems the agent measured \(kubelet's nodefs and imagefs/);
  // Beside a measured one, a filesystem over its warning that the agent does not measure is still named.
  b.send('firing', data);
  await page.waitForFunction(() => /\/data is over its warning/.test(document.getElementById('consumers-note')?.textContent ?? ''));
  t.match(await page.locator('#consumers-note').textContent(), /^The largest consumers .* \/data is over its warning, and no finding names what fills it/);
  b.send('resolved', data);
  await page.waitForFunction(() => !/\/data/.test(document.getElementById('consumers-note')?.textContent ?? ''));
  await shot(page, 'node-consumers');
  await shot(page, 'node-page');

  // The pod view: the `why` answer for a stuck pod, and for one that is not.
  const stuck = finding('node-b', 'pod.stuck', 'prod/api-0', 'critical', {
    message: 'Pod prod/api-0 has been Terminating for 12 minutes: an immutable file blocks the removal of its container.',
    remedy: 'chattr -i /var/lib/docker/overlay2/abc/diff/etc/lock',
    workload: { namespace: 'prod', pod: 'api-0' },
    evidence: { pod: { nodeName: 'node-b' }, walk: [{ cause: 'finalizers', checked: true, found: false, summary: 'none', remedy: null }, { cause: 'immutable', checked: true, found: true, summary: '/etc/lock is immutable', remedy: 'chattr -i' }] },
  });
  b.send('firing', stuck);
  await until(() => agg.fleet.active({ check: 'pod.stuck' }).length === 1, 10_000, 'the pod.stuck finding');
  await page.goto(`${base}/#/`);
  await page.locator('#pod-input').fill('prod/api-0');
  await page.locator('#pod-form button').click();
  await page.waitForFunction(() => /immutable file blocks/.test(document.getElementById('pod-answer')!.textContent ?? ''));
  t.match(await page.locator('#pod-answer ol').textContent(), /immutable: FOUND\. \/etc\/lock is immutable/, 'the walk, in the runbooks\' order');
  t.match(await page.locator('#pod-answer code').textContent(), /^chattr -i /);
  await shot(page, 'pod-stuck');
  await page.goto(`${base}/#/pod/prod/web-1`);
  await page.waitForFunction(() => /^(Not stuck|Unknown)/.test(document.querySelector('#pod-answer p')?.textContent ?? ''));
  t.match(await page.locator('#pod-answer').textContent(), /Unknown: no agent watches pods/, 'no agent here watches pods, so it does not say "not stuck"');

  // A node whose agent goes away is marked silent.
  await page.goto(`${base}/#/`);
  a.close();
  await cellIs(page, 0, COLORS.silent, 'node-a silent once its agent is gone');
  t.equal(await page.locator('#count-silent').textContent(), '1 silent');
  t.equal(await page.locator('#worst li >> nth=0').getAttribute('data-node'), 'node-a', 'silent nodes lead the worst');

  // Stale: the socket stays open but nothing comes (no delta, no tick) for 15 s; the page says so.
  agg.web.stop();
  await page.waitForSelector('#status[data-state=stale]', { timeout: 30_000 });
  t.match(await page.locator('#status').textContent(), /stale: nothing from the aggregator for \d+ s/);
  await shot(page, 'stale');

  // Disconnected: the aggregator goes away and the page says so.
  await agg.stop();
  await page.waitForSelector('#status[data-state=disconnected]', { timeout: 15_000 });
  t.match(await page.locator('#status').textContent(), /disconnected/);
  await shot(page, 'disconnected');
  t.same(errors, [], 'no script errors');
});

t.test('an admin prunes a real agent from the page: a dry run first, then a confirm', async (t) => {
  const browser = await launch(t);
  if (!browser || !requireRuntime(t)) return;
  const { port, base } = await startAggregator(t);
  const dir = mkdtempSync(path.join(os.tmpdir(), 'nw-web-prune-'));
  writeFileSync(path.join(dir, 'agent'), 'agent-token-0123456789\n');
  const procs: ChildProcess[] = [];
  t.teardown(() => {
    for (const p of procs) p.kill('SIGKILL');
    dockerTry('rmi', '-f', 'nwprune/web-old:1');
    rmSync(dir, { recursive: true, force: true });
  });
  procs.push(
    run(['agent', '--aggregator', `ws://127.0.0.1:${port}`, '--token-file', path.join(dir, 'agent'), '--listen', '127.0.0.1:0', '--node', 'prune-on',
      ...[...QUIET_COLLECTORS, 'collectors.disk.enabled=false', 'prune.enabled=true', 'prune.label=nodewarden-test=prune', 'prune.containerdNamespaces=[]'].flatMap((s) => ['--set', s])]),
  );
  dockerTry('rmi', '-f', 'nwprune/web-old:1');
  makeLabelledImage('nwprune/web-old:1');
  const { page, errors } = await newPage(browser, base);
  await logIn(page, base, 'admin-token-0123456789');
  await page.waitForFunction(() => document.getElementById('count-nodes')?.textContent === '1 nodes', undefined, { timeout: 30_000 });
  await page.goto(`${base}/#/node/prune-on`);
  await page.waitForSelector('#prune:not([hidden])');
  t.ok(await page.locator('#prune-confirm').isDisabled(), 'no confirm before a dry run');
  await page.locator('#prune-hours').fill('0');
  await page.locator('#prune-dry').click();
  await page.waitForFunction(() => /would be removed/.test(document.getElementById('prune-state')!.textContent ?? ''), undefined, { timeout: 60_000 });
  t.match(await page.locator('#prune-lines').textContent(), /would-remove {2}nwprune\/web-old:1/, 'the dry run names the image');
  t.equal(dockerTry('image', 'inspect', 'nwprune/web-old:1').code, 0, 'and removes nothing');
  await shot(page, 'prune-dry-run');
  await page.locator('#prune-confirm').click();
  await page.waitForFunction(() => /removed 1 image/.test(document.getElementById('prune-state')!.textContent ?? ''), undefined, { timeout: 60_000 });
  t.match(await page.locator('#prune-lines').textContent(), /removed {2}nwprune\/web-old:1/);
  t.not(dockerTry('image', 'inspect', 'nwprune/web-old:1').code, 0, 'gone');
  await shot(page, 'prune-done');
  t.same(errors, [], 'no script errors');
});
