// @live quiet: uses the real machine through test/helpers/live.ts or runtime.ts; it asserts a calm node (no false finding under churn, load and timing), so it runs after the unit files
// The pids collector on this machine's real kernel and dockerd: a container at its --pids-limit, a
// parent that never reaps its children, and a busy machine where neither check fires at defaults.
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { pids, type PidsData } from '../../collectors/pids.js';
import { contextFor } from '../helpers/context.js';
import { ensureTestImage, inspectField, removeContainer, requireRuntime, runContainer } from '../helpers/runtime.js';
import { eventually } from '../helpers/processes.js';

const collectTwice = async () => {
  const first = await pids.collect(contextFor(pids, '/'));
  if (first.kind !== 'ok') throw new Error(`pids: ${first.kind}`);
  const second = await pids.collect(contextFor(pids, '/', { previous: first.data }));
  if (second.kind !== 'ok') throw new Error(`pids: ${second.kind}`);
  return { first, second };
};

const zombiesOf = (ppid: number): number =>
  execFileSync('ps', ['-o', 'stat=', '--ppid', String(ppid)], { encoding: 'utf8' }).split('\n').filter((s) => s.startsWith('Z')).length;

t.test('on this busy machine no pids check fires at defaults', async (t) => {
  if (!requireRuntime(t)) return;
  const { first, second } = await collectTwice();
  const data: PidsData = second.data;
  t.comment(`node: ${data.node?.tasks} tasks, pid_max ${data.node?.pidMax}, threads-max ${data.node?.threadsMax}; ${data.cgroups.length} limited cgroups; zombie parents over threshold: ${data.zombieParents.length}`);
  t.ok((data.node?.tasks ?? 0) > 50, 'the node count is read (loadavg)');
  t.same([...first.observations, ...second.observations].map((o) => `${o.check} ${o.subject}: ${o.message}`), []);
});

t.test('a container at its --pids-limit is named, critical', async (t) => {
  if (!requireRuntime(t)) return;
  ensureTestImage();
  const name = `nw-pids-limit-${process.pid}`;
  t.teardown(() => removeContainer(name));
  // ash exits when a fork fails, so the loop runs in a subshell: its sleeps stay (reparented to pid 1)
  // after it dies at the limit, and pid 1 then execs sleep, which needs no fork.
  const id = runContainer(name, ['sh', '-c', '(for i in $(seq 60); do sleep 300 & done; wait) 2>/dev/null; exec sleep 300'], ['--pids-limit', '40']);
  let obs: Awaited<ReturnType<typeof collectTwice>>['second']['observations'] = [];
  t.ok(await eventually(async () => {
    const r = await pids.collect(contextFor(pids, '/'));
    obs = r.kind === 'ok' ? r.observations.filter((o) => o.check === 'pids.container' && o.subject === id) : [];
    // While the loop still forks it passes 80% (a warning) on its way to the limit.
    return obs[0]?.severity === 'critical';
  }, 30_000), 'pids.container fires for the container, critical at the limit');
  const f = obs[0];
  t.comment(f?.message ?? 'no finding');
  t.equal(f?.severity, 'critical');
  // Critical from 95% (38 of 40): the loop may still be forking when the finding is first seen.
  t.match(f?.message, new RegExp(`^Container ${name} uses (38|39|40) of its 40 pids`));
  t.equal(f?.workload?.containerId, id);
  // The remedy as pasted lists the container's processes.
  const listed = execFileSync('sh', ['-c', f!.remedy.split('  #')[0]!], { encoding: 'utf8' });
  t.ok(listed.split('\n').filter((l) => l.includes('sleep')).length >= 30, "the remedy's ps lists the container's sleeps");
  removeContainer(name);
  const after = await pids.collect(contextFor(pids, '/'));
  t.notOk(after.kind === 'ok' && after.observations.some((o) => o.subject === id), 'gone with the container');
});

t.test('a parent that never reaps is named with its container, on the second run only', async (t) => {
  if (!requireRuntime(t)) return;
  ensureTestImage();
  const name = `nw-pids-zombies-${process.pid}`;
  t.teardown(() => removeContainer(name));
  // pid 1 forks 60 sleeps, then execs `sleep 300` over itself: the children's parent is now a program
  // that never calls wait(), so each one that exits stays a zombie.
  const id = runContainer(name, ['sh', '-c', 'for i in $(seq 60); do sleep 1 & done; exec sleep 300']);
  const parent = Number(inspectField(name, '{{.State.Pid}}'));
  t.ok(await eventually(() => zombiesOf(parent) === 60, 20_000), 'ps shows 60 zombie children of the container\'s pid 1');
  const { first, second } = await collectTwice();
  t.notOk(first.observations.some((o) => o.check === 'pids.zombies'), 'first sighting: not yet');
  const z = second.observations.find((o) => o.check === 'pids.zombies');
  t.comment(z?.message ?? 'no finding');
  t.equal(z?.subject, `pid:${parent}`);
  t.match(z?.message, `Process sleep (pid ${parent}) in container ${name} holds 60 zombie children, 60 of them unreaped since the last run`);
  t.equal(z?.workload?.containerId, id);
  t.match(z?.remedy, `ps -o pid,stat,cmd --ppid ${parent} | head; kill -s CHLD ${parent}`);
  // The remedy's first command runs as pasted and shows the zombies.
  const shown = execFileSync('sh', ['-c', `ps -o pid,stat,cmd --ppid ${parent}`], { encoding: 'utf8' });
  t.equal(shown.split('\n').filter((l) => / Z/.test(l)).length, 60);
});

t.test('a parent that reaps every 2 s does not fire, though it always holds 60 zombies', async (t) => {
  if (!requireRuntime(t)) return;
  ensureTestImage();
  const name = `nw-pids-reaper-${process.pid}`;
  t.teardown(() => removeContainer(name));
  // 60 children that exit at once, reaped by `wait` 2 s later (ash's `read` builtin does not reap): at
  // any moment 60 zombies, never the same ones for more than 2 s. Runs 2.5 s apart, like the agent's
  // runs (30 s) against a parent that reaps more often than that.
  runContainer(name, ['sh', '-c', 'mkfifo /tmp/f; exec 3<>/tmp/f; while true; do for i in $(seq 60); do true & done; read -t 2 x <&3; wait; done']);
  const parent = Number(inspectField(name, '{{.State.Pid}}'));
  t.ok(await eventually(() => zombiesOf(parent) >= 50, 20_000), 'ps shows its zombies');
  const runs: Awaited<ReturnType<typeof pids.collect>>[] = [];
  let previous: PidsData | undefined;
  for (let i = 0; i < 3; i++) {
    if (i > 0) await new Promise((r) => setTimeout(r, 2500));
    const r = await pids.collect(contextFor(pids, '/', { previous }));
    runs.push(r);
    previous = r.kind === 'ok' ? r.data : undefined;
  }
  const seen = runs.map((r) => (r.kind === 'ok' ? r.data.zombieParents.find((z) => z.pid === parent)?.zombies.length ?? 0 : -1));
  t.comment(`its zombies in three runs 2.5 s apart: ${seen.join(', ')}`);
  t.ok(seen.filter((n) => n >= 50).length >= 2, 'at least two runs saw it over the threshold');
  const fired = runs.flatMap((r) => (r.kind === 'ok' ? r.observations.filter((o) => o.check === 'pids.zombies') : []));
  t.same(fired.map((o) => o.message), []);
});
