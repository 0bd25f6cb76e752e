import t from 'tap';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { cgroupSubject, evaluatePids, parseLoadavgTasks, parseProcStat, parsePidsMax, pids, pidsCgroupOf, zombiesByParent, type PidsConfig, type PidsData, type ProcStat } from '../../collectors/pids.js';
import { contextFor, settingsFor } from '../helpers/context.js';

// Captured on this VM (cgroup v1) with two docker containers running: one started with --pids-limit 40
// whose shell forked sleeps until fork failed (39 of 40 pids), one whose pid 1 exec'd `sleep 300` over
// 60 children that then exited: 60 zombies nobody reaps.
const FIXTURE = path.resolve('test/fixtures/host/pids-vm');
const FORKS = 'ec278a8caa47c886e10a3d8a2f81dd509b5a35c82063937646d1312ecf0c3a65';
const FORKS_PID = 10539;
const ZOMBIES = 'a8e0c1dc3b7a0b618c9e877cfdac507078e81106eb07eb0d6c60867df3f2a48d';
const ZOMBIES_PID = 10214;
const config = settingsFor(pids) as unknown as PidsConfig;

const container = (id: string, name: string, pid: number, workload: Record<string, string> = {}) => ({
  id, name, manager: 'docker', image: 'nodewarden-test/busybox:1', labels: {}, storage: {},
  workload: { containerId: id, containerName: name, ...workload },
  docker: { status: 'running', running: true, pid, dead: false, removing: false, error: '', exitCode: 0 },
});
const runtimeOf = (containers: unknown[]) => ({ settleMs: 0, ping: async () => [], snapshot: async () => ({ runtimes: [], containers, takenAt: Date.now() }) });

t.test('parses /proc/PID/stat, with odd comms, from the captured tree', async (t) => {
  const st = parseProcStat(readFileSync(path.join(FIXTURE, 'proc', String(ZOMBIES_PID), 'stat'), 'utf8'));
  t.match(st, { pid: ZOMBIES_PID, comm: 'sleep', state: 'S', threads: 1 });
  t.ok(st!.startTime > 0);
  const odd = parseProcStat('4242 (a) b (c)) Z 17 0 0 0 -1 4194304 0 0 0 0 0 0 0 0 20 0 3 0 98765 0 0 18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0\n');
  t.same(odd, { pid: 4242, comm: 'a) b (c)', state: 'Z', ppid: 17, threads: 3, startTime: 98765 }, 'comm with spaces and parentheses');
  t.equal(parseProcStat(''), undefined);
  t.equal(parseProcStat('12 (x) S'), undefined, 'truncated');
});

t.test('loadavg gives the node task count; pids.max says max for no limit', async (t) => {
  t.same(parseLoadavgTasks(readFileSync(path.join(FIXTURE, 'proc/loadavg'), 'utf8')), { running: 1, total: 387 });
  t.equal(parseLoadavgTasks('garbage'), undefined);
  t.equal(parsePidsMax('max\n'), undefined);
  t.equal(parsePidsMax('40\n'), 40);
  t.equal(parsePidsMax(undefined), undefined);
  t.same(pidsCgroupOf(readFileSync(path.join(FIXTURE, 'proc', String(FORKS_PID), 'cgroup'), 'utf8')), { path: `/docker/${FORKS}`, v2: false }, 'v1: the pids controller line');
  t.same(pidsCgroupOf('0::/kubepods.slice/x.scope\n'), { path: '/kubepods.slice/x.scope', v2: true });
});

t.test('zombies grouped by parent: the captured container holds 60', async (t) => {
  const stats: ProcStat[] = [];
  for (const d of readdirNumeric(path.join(FIXTURE, 'proc'))) {
    const st = parseProcStat(readFileSync(path.join(FIXTURE, 'proc', d, 'stat'), 'utf8'));
    if (st) stats.push(st);
  }
  const groups = zombiesByParent(stats, 50);
  t.equal(groups.length, 1, 'one parent over 50 on this machine');
  t.equal(groups[0]?.ppid, ZOMBIES_PID);
  t.equal(groups[0]?.zombies.length, 60);
  t.same(zombiesByParent(stats, 61), [], 'below the threshold: nothing');
});

t.test('collect over the captured tree: the limited container is critical, the zombies need a second run', async (t) => {
  const runtime = runtimeOf([container(FORKS, 'nwh9-forks', FORKS_PID), container(ZOMBIES, 'nwh9-zombies', ZOMBIES_PID)]);
  const run = async (previous: unknown) => {
    const r = await pids.collect({ ...contextFor(pids, FIXTURE, { previous }), runtime } as never);
    if (r.kind !== 'ok') throw new Error(r.kind);
    return r;
  };
  const first = await run(undefined);
  t.same(first.data.node, { tasks: 387, pidMax: 32768, threadsMax: 192738 });
  const c = first.observations.find((o) => o.check === 'pids.container');
  t.equal(c?.severity, 'critical', '39 of 40 is 97.5%');
  t.equal(c?.subject, FORKS);
  t.match(c?.message, /^Container nwh9-forks uses 39 of its 40 pids \(98%, cgroup \/docker\/ec278a8caa47/);
  t.match(c?.remedy, new RegExp(`grep ${FORKS} `));
  t.notOk(first.observations.some((o) => o.check === 'pids.zombies'), 'one sighting of zombies is not enough');
  t.notOk(first.observations.some((o) => o.check === 'pids.node'), '387 of 32,768');
  t.same(first.data.consumers.slice(0, 2), [{ who: 'container nwh9-zombies', tasks: 61 }, { who: 'container nwh9-forks', tasks: 39 }]);

  const second = await run(first.data);
  const z = second.observations.find((o) => o.check === 'pids.zombies');
  t.equal(z?.subject, `pid:${ZOMBIES_PID}`);
  t.match(z?.message, `Process sleep (pid ${ZOMBIES_PID}) in container nwh9-zombies holds 60 zombie children, 60 of them unreaped since the last run`);
  t.equal(z?.remedy, `ps -o pid,stat,cmd --ppid ${ZOMBIES_PID} | head; kill -s CHLD ${ZOMBIES_PID}  # nudge it to reap; if the zombies stay, docker restart nwh9-zombies (its zombies then go to init, which reaps them)`);
  t.equal(z?.workload?.containerId, ZOMBIES);
});

t.test('a parent that reaps and makes new zombies between runs does not fire', async (t) => {
  const parent = { pid: 500, startTime: 1, comm: 'httpd', cmdline: 'httpd', zombies: range(1000, 60) };
  const prev: PidsData = { cgroups: [], consumers: [], zombieParents: [parent], firing: [] };
  const churned: PidsData = { ...prev, zombieParents: [{ ...parent, zombies: range(2000, 60) }] };
  t.same(evaluatePids(churned, config, prev), [], 'same parent, all new zombies');
  const restarted: PidsData = { ...prev, zombieParents: [{ ...parent, startTime: 2 }] };
  t.same(evaluatePids(restarted, config, prev), [], 'same pid, another process (start time)');
  const some: PidsData = { ...prev, zombieParents: [{ ...parent, zombies: [...range(1000, 49), ...range(3000, 20)] }] };
  t.same(evaluatePids(some, config, prev), [], '49 kept of 69: under 50');
  t.equal(evaluatePids(prev, config, prev).length, 1, 'the same 60 twice');
});

t.test('node band with hysteresis, naming the top pods', async (t) => {
  const at = (tasks: number, before?: PidsData) => {
    const data: PidsData = { node: { tasks, pidMax: 32768, threadsMax: 192738 }, cgroups: [], consumers: [{ who: 'shop/web-0', tasks: 20000 }, { who: 'container build', tasks: 100 }], zombieParents: [], firing: [] };
    const obs = evaluatePids(data, config, before);
    data.firing = obs.map((o) => [`${o.check}\0${o.subject}`, o.severity]);
    return { data, obs };
  };
  t.same(at(26_000).obs, [], '79%');
  const warn = at(26_300);
  t.equal(warn.obs[0]?.severity, 'warning', '80.3%');
  t.match(warn.obs[0]?.message, /26,300 tasks \(processes and threads\) on the node, 80% of its limit of 32,768 \(kernel\.pid_max; kernel\.pid_max 32,768, kernel\.threads-max 192,738\)/);
  t.match(warn.obs[0]?.message, /Most tasks: shop\/web-0 20,000, container build 100\./);
  t.match(warn.obs[0]?.remedy, /sysctl -w kernel\.pid_max=65536$/);
  const hovering = at(25_000, warn.data);
  t.equal(hovering.obs[0]?.severity, 'warning', '76% still fires: it clears below 75%');
  t.same(at(24_500, hovering.data).obs, [], '74.8% clears');
  t.same(at(25_000).obs, [], 'never fired: 76% is quiet');
  const crit = at(29_500);
  t.equal(crit.obs[0]?.severity, 'critical', '90%');
  t.equal(at(28_000, crit.data).obs[0]?.severity, 'critical', '85.4% stays critical');
  t.equal(at(27_500, crit.data).obs[0]?.severity, 'warning', '83.9% drops to warning');
  const threads = evaluatePids({ node: { tasks: 9000, pidMax: 4_194_304, threadsMax: 10_000 }, cgroups: [], consumers: [], zombieParents: [], firing: [] }, config, undefined);
  t.match(threads[0]?.remedy, /sysctl -w kernel\.threads-max=20000/, 'threads-max is the limit that binds');
});

t.test("a pod's limit (kubelet podPidsLimit, cgroup v2) names the pod and its containers", async (t) => {
  const root = mkdtempSync(path.join(os.tmpdir(), 'nw-pids-'));
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  const uid = '1a2b3c4d-5e6f-7a8b-9c0d-1e2f3a4b5c6d';
  const pod = `/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod${uid.replace(/-/g, '_')}.slice`;
  const ids = ['a'.repeat(64), 'b'.repeat(64)];
  const write = (dir: string, current: number, max: string) => {
    const d = path.join(root, 'sys', 'fs', 'cgroup', ...dir.split('/').filter(Boolean));
    mkdirSync(d, { recursive: true });
    writeFileSync(path.join(d, 'pids.current'), `${current}\n`);
    writeFileSync(path.join(d, 'pids.max'), `${max}\n`);
  };
  mkdirSync(path.join(root, 'proc'), { recursive: true });
  writeFileSync(path.join(root, 'proc', 'loadavg'), '0.50 0.40 0.30 2/1200 4242\n');
  write('/kubepods.slice', 700, 'max');
  write('/kubepods.slice/kubepods-burstable.slice', 500, 'max');
  write(pod, 980, '1024');
  ids.forEach((id, i) => {
    write(`${pod}/cri-containerd-${id}.scope`, i === 0 ? 970 : 10, 'max');
    mkdirSync(path.join(root, 'proc', String(100 + i)), { recursive: true });
    writeFileSync(path.join(root, 'proc', String(100 + i), 'cgroup'), `0::${pod}/cri-containerd-${id}.scope\n`);
  });
  const wl = { pod: 'shop-0', namespace: 'shop', podUid: uid };
  const runtime = runtimeOf([container(ids[0]!, 'php', 100, { ...wl, containerName: 'php' }), container(ids[1]!, 'nginx', 101, { ...wl, containerName: 'nginx' })]);
  const r = await pids.collect({ ...contextFor(pids, root), runtime } as never);
  if (r.kind !== 'ok') throw new Error(r.kind);
  const obs = r.observations.filter((o) => o.check === 'pids.container');
  t.equal(obs.length, 1, 'one finding: the pod');
  t.equal(obs[0]?.subject, `pod:${uid}`);
  t.equal(obs[0]?.severity, 'critical', '980 of 1024 is 95.7%');
  t.match(obs[0]?.message, /^Pod shop\/shop-0 \(containers: php, nginx\) uses 980 of its 1,024 pids \(96%/);
  t.match(obs[0]?.remedy, /kubelet's podPidsLimit/);
  t.same(r.data.consumers, [{ who: 'shop/shop-0', tasks: 980 }], 'top consumers by pod sum its containers');
  t.equal(cgroupSubject({ path: `${pod}/cri-containerd-${ids[0]}.scope`, current: 1, max: 2, own: true, members: [] }), `cgroup:${pod}/cri-containerd-${ids[0]}.scope`);
});

t.test('a limit high in the tree (kubepods) names ten containers and counts the rest', async (t) => {
  const members = Array.from({ length: 12 }, (_, i) => ({ id: String(i).padStart(64, 'c'), name: `app-${i}`, workload: { pod: `web-${i}`, namespace: 'shop', containerName: 'app' } }));
  const data: PidsData = { cgroups: [{ path: '/kubepods.slice', current: 9600, max: 10000, own: false, members }], consumers: [], zombieParents: [], firing: [] };
  const [f] = evaluatePids(data, config, undefined);
  t.equal(f?.subject, 'cgroup:/kubepods.slice');
  t.equal(f?.severity, 'critical');
  t.match(f?.message, /^Cgroup \/kubepods\.slice \(containers: container app of pod shop\/web-0, .*container app of pod shop\/web-9 and 2 more\) uses 9,600 of its 10,000 pids \(96%/);
  t.notOk(f?.workload, 'no one workload');
});

t.test('a host without /proc is no data', async (t) => {
  const root = mkdtempSync(path.join(os.tmpdir(), 'nw-pids-empty-'));
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  const r = await pids.collect({ ...contextFor(pids, root), runtime: runtimeOf([]) } as never);
  t.equal(r.kind, 'no-data');
});

function range(from: number, n: number): number[] {
  return Array.from({ length: n }, (_, i) => from + i);
}

function readdirNumeric(dir: string): string[] {
  return readdirSync(dir).filter((d) => /^\d+$/.test(d));
}
