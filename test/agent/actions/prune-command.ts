import t from 'tap';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createPruneCommandHandler, type PruneCommand } from '../../../agent/actions/prune-command.js';
import type { PruneOptions } from '../../../agent/actions/prune.js';
import { loadConfig } from '../../../agent/config.js';
import { createHostAccess } from '../../../agent/host/access.js';
import { exec } from '../../../agent/host/exec.js';
import type { Runtimes } from '../../../agent/runtime/model.js';
import type { AgentMessage, PruneResult } from '../../../protocol/wire.js';
import { quietLog } from '../../helpers/context.js';
import { eventually } from '../../helpers/processes.js';

const command = (id: string, dryRun = true): PruneCommand => ({ v: 1, type: 'command', id, command: 'prune', untilMs: 3_600_000, dryRun, requestedBy: 'alice' });

/** A handler over an empty host root, with a prune the test finishes when it wants. */
function setup(t: { teardown(fn: () => void): void }, enabled: boolean) {
  const root = mkdtempSync(path.join(os.tmpdir(), 'nw-prune-cmd-'));
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  const settings = { ...loadConfig({ node: 'n1' }).prune, enabled, sandboxImages: ['my-pause'] };
  const runs: { opts: PruneOptions; progress: (p: { image: string; size: number; state: 'removed'; index: number; total: number }) => void; finish: (r: PruneResult | Error) => void }[] = [];
  const handle = createPruneCommandHandler({
    node: 'n1',
    settings,
    host: createHostAccess({ root, exec }),
    runtime: {} as Runtimes,
    log: quietLog,
    prune: (_rt, opts, onProgress) => new Promise((resolve, reject) => runs.push({ opts, progress: onProgress, finish: (r) => (r instanceof Error ? reject(r) : resolve(r)) })),
  });
  const replies: AgentMessage[] = [];
  // A ceiling for a loaded machine (it was 1 s): the assertions after each wait say what was missing.
  const until = (ok: () => boolean) => eventually(ok, 10_000);
  /** The replies about one command. */
  const about = (id: string) => replies.flatMap((m) => (m.type === 'progress' || m.type === 'result') && m.commandId === id ? [m] : []);
  return { handle, runs, replies, about, reply: (m: AgentMessage) => void replies.push(m), until };
}

t.test('prune disabled on the node: refused at once, nothing runs', async (t) => {
  const { handle, runs, replies, reply } = setup(t, false);
  handle(command('c1'), reply);
  t.equal(replies.length, 1);
  const r = replies[0] as Extract<AgentMessage, { type: 'result' }>;
  t.same([r.type, r.commandId, r.result.ok, r.result.removed], ['result', 'c1', false, 0]);
  t.match(r.result.refused, /prune is disabled on n1 \(set prune.enabled: true/);
  t.equal(runs.length, 0, 'no prune ran');
});

t.test('one prune at a time: a second command while one runs is refused; progress then the result; free again after', async (t) => {
  const { handle, runs, about, reply, until } = setup(t, true);
  handle(command('c1', false), reply);
  await until(() => runs.length === 1);
  t.equal(runs.length, 1, 'the first prune runs');
  t.same([runs[0]!.opts.dryRun, runs[0]!.opts.untilMs, runs[0]!.opts.sandboxImages], [false, 3_600_000, ['my-pause']], 'with the command and the config');
  handle(command('c2'), reply);
  const refused = about('c2')[0] as Extract<AgentMessage, { type: 'result' }>;
  t.match(refused.result.refused, /a prune is already running on n1/);
  runs[0]!.progress({ image: 'old:1', size: 10, state: 'removed', index: 1, total: 1 });
  runs[0]!.finish({ ok: true, dryRun: false, runtime: 'docker', removed: 1, bytes: 10, errors: [] });
  await until(() => about('c1').some((m) => m.type === 'result'));
  t.same(about('c1').map((m) => m.type), ['progress', 'result'], 'progress as it goes, then one result');
  t.match(about('c1').at(-1), { result: { ok: true, removed: 1, bytes: 10 } });

  handle(command('c3'), reply);
  await until(() => runs.length === 2);
  t.equal(runs.length, 2, 'the next command runs once the first is done');
  runs[1]!.finish(new Error('docker went away'));
  await until(() => about('c3').length > 0);
  t.match(about('c3')[0], { type: 'result', result: { ok: false, runtime: 'unknown', errors: ['docker went away'] } }, 'a failed prune still answers, with the error');
  handle(command('c4'), reply);
  await until(() => runs.length === 3);
  t.equal(runs.length, 3, 'and a failed one frees the node too');
  runs[2]!.finish({ ok: true, dryRun: true, runtime: 'docker', removed: 0, bytes: 0, errors: [] });
});
