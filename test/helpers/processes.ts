// nodewarden as real processes on loopback, for end-to-end tests.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';

export const BIN = path.resolve('dist/cli/main.js');

export async function freePort(): Promise<number> {
  const srv = net.createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  const port = (srv.address() as net.AddressInfo).port;
  await new Promise((r) => srv.close(r));
  return port;
}

export function run(args: string[], env: NodeJS.ProcessEnv = {}): ChildProcess {
  return spawn(process.execPath, [BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
}

export function runSync(args: string[], env: NodeJS.ProcessEnv = {}) {
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', timeout: 120_000, env: { ...process.env, ...env } });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

export async function until(pred: () => boolean | Promise<boolean>, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms;
  while (!(await pred())) {
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * Like until, but answers whether `pred` came true within `ms` instead of throwing, for
 * `t.ok(await eventually(pred, ms), 'what')`. The ceiling is for a loaded 2-core machine: it returns
 * as soon as `pred` holds.
 */
export async function eventually(pred: () => boolean | Promise<boolean>, ms = 30_000): Promise<boolean> {
  return until(pred, ms, '').then(() => true, () => false);
}

export const TOKENS = { agent: 'agent-secret-0123456789', tail: 'tail-secret-0123456789', admin: 'admin-secret-0123456789' };

/** Writes DIR/tokens/{agent,tail,admin}; returns the tokens dir. */
export function writeTokens(dir: string): string {
  const tokens = path.join(dir, 'tokens');
  mkdirSync(tokens, { recursive: true });
  writeFileSync(path.join(tokens, 'agent'), `${TOKENS.agent}\n`);
  writeFileSync(path.join(tokens, 'tail'), `ops ${TOKENS.tail}\n`);
  writeFileSync(path.join(tokens, 'admin'), `alice ${TOKENS.admin}\n`);
  return tokens;
}

export async function startAggregator(port: number, tokensDir: string, extra: string[] = []): Promise<ChildProcess> {
  const agg = run(['aggregator', '--listen', `127.0.0.1:${port}`, '--tokens-dir', tokensDir, '--log-level', 'warn', ...extra]);
  await until(async () => {
    try {
      return (await fetch(`http://127.0.0.1:${port}/healthz`)).ok;
    } catch {
      return false;
    }
  }, 30_000, 'the aggregator to answer /healthz');
  return agg;
}

/** Waits until the aggregator lists `node` as connected. */
export async function waitForNode(port: number, node: string): Promise<void> {
  await until(async () => {
    const r = await fetch(`http://127.0.0.1:${port}/api/nodes`, { headers: { authorization: `Bearer ${TOKENS.tail}` } });
    const nodes = (await r.json()) as { node: string; connected: boolean }[];
    return nodes.some((n) => n.node === node && n.connected);
  }, 30_000, `agent ${node} to connect`);
}

// kernel too: after other tests the machine's real kernel log holds OOM kills and filesystem errors, which
// are not what a process test asserts on (the kernel collector has its own tests).
export const QUIET_COLLECTORS = ['sockets', 'sockstat', 'runtime', 'drift', 'immutable', 'mounts', 'kernel', 'pids', 'conntrack', 'pressure'].map((c) => `collectors.${c}.enabled=false`);

/** Like runSync, without blocking this process (for servers, such as the fake API server, that live in it). */
export function runAsync(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [BIN, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}
