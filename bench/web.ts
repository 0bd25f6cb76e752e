// Bench: the web view at scale. One aggregator process; bench/load.ts connects 5,000 simulated agents
// (20 findings each) and sends 2,000 transitions/s; headless Chromium (Debian's, through playwright-core)
// opens the page. Reports the time to the first full render (5,000 cells, counts, the first 200 rows),
// the tab's JS heap over the run and after it (bounded: nothing per transition is kept), long tasks and
// frames in steady state, and the aggregator's added CPU and memory per open tab (the browser's, then 10
// more tabs as plain WebSocket clients), beside what a watch-everything subscriber (/api/tail) receives.
// Targets 127.0.0.1 only and stops by itself.
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import WebSocket from 'ws';
import { chromium } from 'playwright-core';
import { procStat, startBenchAggregator } from './aggregator.js';
import { ROOT } from './util.js';

const CHROMIUM = process.env['NODEWARDEN_CHROMIUM'] ?? '/usr/bin/chromium';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const rssMiB = (pid: number) => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0) / 1024;

/** CPU (share of one core) and RSS of `pid` over `ms`. */
async function measure(pid: number, ms: number): Promise<{ cpu: number; rss: number }> {
  const a = procStat(pid);
  await sleep(ms);
  const b = procStat(pid);
  return { cpu: (b.cpuSeconds - a.cpuSeconds) / (ms / 1000), rss: rssMiB(pid) };
}

/** Bytes per second a WebSocket receives over `ms`. */
async function bytesPerSecond(ws: WebSocket, ms: number): Promise<number> {
  let n = 0;
  const on = (d: Buffer) => (n += d.length);
  ws.on('message', on);
  await sleep(ms);
  ws.off('message', on);
  return n / (ms / 1000);
}

export async function benchWeb(opts: { seconds?: number; agents?: number; rate?: number } = {}): Promise<string> {
  if (!existsSync(CHROMIUM)) return `web: skipped, no Chromium at ${CHROMIUM} (apt-get install chromium)`;
  const steady = opts.seconds ?? 60;
  const agents = opts.agents ?? 5000;
  const rate = opts.rate ?? 2000;
  const phase = 15;
  const { agg, port, stop } = await startBenchAggregator([], ['--heartbeat', '30s', '--log-level', 'error']);
  const base = `http://127.0.0.1:${port}`;
  const pid = agg.pid!;
  // Generous: the agents connect first (about a minute on 2 cores), then the phases below.
  const loadSeconds = 90 + phase + steady + phase + 30;
  const load = spawn(process.execPath, [path.join(ROOT, 'dist', 'bench', 'load.js'), `ws://127.0.0.1:${port}`, 'bench-agent-token-0123456789', 'bench-tail-token-0123456789', String(agents), '0', String(rate), String(loadSeconds)], { stdio: ['ignore', 'ignore', 'inherit'] });
  const killer = setTimeout(() => load.kill('SIGKILL'), (loadSeconds + 300) * 1000);
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'], timeout: 60_000 });
  const extra: WebSocket[] = [];
  try {
    // Wait for the whole fleet (its snapshots applied), then for the transitions to be flowing.
    for (let i = 0; ; i++) {
      const h = (await (await fetch(`${base}/healthz`)).json()) as { nodes: number };
      if (h.nodes >= agents) break;
      if (i > 600) throw new Error(`only ${h.nodes} of ${agents} agents connected`);
      await sleep(500);
    }
    await sleep(3000);
    const baseline = await measure(pid, phase * 1000);

    const login = await fetch(`${base}/api/session`, { method: 'POST', headers: { origin: base, 'content-type': 'application/json' }, body: '{"token":"bench-tail-token-0123456789"}' });
    const cookie = (login.headers.get('set-cookie') ?? '').split(';')[0]!;
    const context = await browser.newContext({ viewport: { width: 1280, height: 1000 } });
    await context.addCookies([{ name: 'nw_session', value: cookie.split('=')[1]!, url: base }]);
    const page = await context.newPage();
    await page.addInitScript(() => {
      const w = window as unknown as { __long: { at: number; ms: number }[]; __frames: number };
      w.__long = [];
      w.__frames = 0;
      new PerformanceObserver((list) => {
        for (const e of list.getEntries()) w.__long.push({ at: e.startTime, ms: e.duration });
      }).observe({ type: 'longtask', buffered: true });
      const tick = () => {
        w.__frames++;
        requestAnimationFrame(tick);
      };
      requestAnimationFrame(tick);
    });
    const cdp = await context.newCDPSession(page);
    await cdp.send('Performance.enable');
    const heapMiB = async () => {
      const { metrics } = (await cdp.send('Performance.getMetrics')) as { metrics: { name: string; value: number }[] };
      return (metrics.find((m) => m.name === 'JSHeapUsedSize')?.value ?? 0) / 1048576;
    };
    const t0 = performance.now();
    await page.goto(`${base}/`);
    await page.waitForFunction((n) => document.getElementById('count-nodes')?.textContent === `${n} nodes` && document.querySelectorAll('#table tbody tr').length >= 200, agents, { timeout: 120_000, polling: 50 });
    const firstRender = (performance.now() - t0) / 1000;
    const renderedAt = await page.evaluate(() => performance.now());

    // Steady state: the tab follows 2,000 transitions/s for `steady` seconds.
    await sleep(5000);
    const heap: number[] = [];
    const frames0 = await page.evaluate(() => (window as unknown as { __frames: number }).__frames);
    const withTab = measure(pid, Math.min(phase, steady) * 1000);
    const sampler = (async () => {
      for (let s = 0; s < steady; s += 10) {
        heap.push(await heapMiB());
        await sleep(Math.min(10, steady - s) * 1000);
      }
    })();
    const oneTab = await withTab;
    await sampler;
    const frames1 = await page.evaluate(() => (window as unknown as { __frames: number }).__frames);
    const fps = (frames1 - frames0) / steady;
    const heapEnd = await heapMiB();
    await cdp.send('HeapProfiler.collectGarbage');
    const heapAfterGc = await heapMiB();
    const long = await page.evaluate((from) => (window as unknown as { __long: { at: number; ms: number }[] }).__long.filter((l) => l.at > from + 5000).map((l) => l.ms), renderedAt);
    const rows = await page.locator('#table tbody tr').count();
    const state = await page.locator('#status').getAttribute('data-state');

    // Ten more tabs, as plain WebSocket clients viewing everything: what each costs the aggregator.
    for (let i = 0; i < 10; i++) {
      const ws = new WebSocket(`ws://127.0.0.1:${port}/api/web`, { headers: { cookie, origin: base }, perMessageDeflate: false });
      await new Promise((r, j) => (ws.once('open', r), ws.once('error', j)));
      ws.send(JSON.stringify({ type: 'view', filter: {}, limit: 200 }));
      extra.push(ws);
    }
    await sleep(3000);
    const elevenTabs = await measure(pid, phase * 1000);
    const tabRate = await bytesPerSecond(extra[0]!, 5000);
    // What a watch-everything dashboard would receive: every transition (a tail subscriber).
    const tail = new WebSocket(`ws://127.0.0.1:${port}/api/tail`, { headers: { authorization: 'Bearer bench-tail-token-0123456789' }, perMessageDeflate: false, maxPayload: 256 * 1024 * 1024 });
    await new Promise((r, j) => (tail.once('open', r), tail.once('error', j)));
    tail.send(JSON.stringify({ v: 1, type: 'subscribe', filter: {} }));
    await sleep(5000);
    const tailRate = await bytesPerSecond(tail, 5000);
    tail.terminate();
    const over200 = long.filter((ms) => ms > 200).length;
    return [
      `web view: ${agents} agents x 20 findings, ${rate} transitions/s (load.ts), headless Chromium ${browser.version()}, all on loopback`,
      `  first full render (${agents} cells, counts, first ${rows} rows): ${firstRender.toFixed(2)} s`,
      `  steady state for ${steady} s: JS heap every 10 s ${heap.map((h) => h.toFixed(1)).join(' ')} MiB; at the end ${heapEnd.toFixed(1)} MiB, ${heapAfterGc.toFixed(1)} MiB after a GC`,
      `  long tasks after the first render: ${long.length} over 50 ms, ${over200} over 200 ms (max ${long.length ? Math.max(...long).toFixed(0) : 0} ms); frames ${fps.toFixed(0)}/s; status ${state}`,
      `  aggregator, no tab: CPU ${(baseline.cpu * 100).toFixed(0)}% of a core, RSS ${baseline.rss.toFixed(0)} MiB; with the browser tab: ${(oneTab.cpu * 100).toFixed(0)}%, ${oneTab.rss.toFixed(0)} MiB; with 10 more tabs: ${(elevenTabs.cpu * 100).toFixed(0)}%, ${elevenTabs.rss.toFixed(0)} MiB`,
      `  added per tab: CPU ${(((elevenTabs.cpu - baseline.cpu) / 11) * 100).toFixed(1)}% of a core, RSS ${((elevenTabs.rss - baseline.rss) / 11).toFixed(1)} MiB (the 10 extra tabs: ${(((elevenTabs.cpu - oneTab.cpu) / 10) * 100).toFixed(1)}%, ${((elevenTabs.rss - oneTab.rss) / 10).toFixed(1)} MiB each)`,
      `  bytes to a tab: ${(tabRate / 1024).toFixed(0)} KiB/s; to a watch-everything subscriber (/api/tail): ${(tailRate / 1024).toFixed(0)} KiB/s`,
    ].join('\n');
  } finally {
    for (const ws of extra) ws.terminate();
    await browser.close().catch(() => undefined);
    clearTimeout(killer);
    load.kill('SIGKILL');
    await stop();
  }
}
