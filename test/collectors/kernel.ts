// @live: real OOM kills in docker containers, real writes to /dev/kmsg
import t from 'tap';
import { execFileSync, spawnSync } from 'node:child_process';
import { appendFileSync, readFileSync, writeFileSync } from 'node:fs';
import { coalesce, eventsFromRecords, evaluateKernel, isHungProcess, kernel, memcgOf, parseMemoryLimit, parseOomKillCounter, type KernelData } from '../../collectors/kernel.js';
import type { KmsgRecord } from '../../collectors/types.js';
import { contextFor, envFor, settingsFor } from '../helpers/context.js';
import { KmsgReader } from '../../agent/host/kmsg.js';
import { requireRuntime, ensureTestImage, TEST_IMAGE, dockerTry } from '../helpers/runtime.js';
import { eventually } from '../helpers/processes.js';
import { makeLoopFs } from '../helpers/live.js';
import type { Observation } from '../../protocol/finding.js';

const config = settingsFor(kernel) as never as { lookback: number; maxGroups: number; cursorFile: string };
const ID = 'a0cb83672e25eeef35e132b119735ece42125c8f280c4f2b15943228ab68892c';
const NOW = Date.parse('2026-12-04T04:00:00Z');

function recs(lines: string[], facility = 0, at = NOW): KmsgRecord[] {
  return lines.map((message, i) => ({ seq: 100 + i, facility, level: 6, usec: i, wallMs: at, message }));
}

const REAL_618 = [
  'sh invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), order=0, oom_score_adj=0',
  'memory: usage 16384kB, limit 16384kB, failcnt 0',
  `oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=${ID},mems_allowed=0,oom_memcg=/docker/${ID},task_memcg=/docker/${ID},task=sh,pid=28830,uid=0`,
  'Memory cgroup out of memory: Killed process 28830 (sh) total-vm:26852kB, anon-rss:16032kB, file-rss:1520kB, shmem-rss:0kB, UID:0 pgtables:76kB oom_score_adj:0',
];

const empty = (): KernelData => ({ groups: [], identities: [], counters: [], losses: [], dropped: 0 });

t.test('one OOM report (four lines) is one kill with the victim, RSS, limit and container', async (t) => {
  const { events } = eventsFromRecords(recs(REAL_618));
  t.equal(events.length, 1);
  const ev = events[0]!;
  t.equal(ev.check, 'kernel.oom');
  t.equal(ev.subject, ID);
  t.equal(ev.evidence['rss_kb'], 17552);
  t.equal(ev.evidence['limit_bytes'], 16 * 1024 * 1024);
  t.match(ev.text, /OOM-killed process sh \(pid 28830\) using 17\.1 MiB at its container's memory limit of 16\.0 MiB/);
});

t.test('a system OOM is the node, critical, and still names the victim container', async (t) => {
  const { events } = eventsFromRecords(recs([
    `oom-kill:constraint=CONSTRAINT_NONE,nodemask=(null),cpuset=/,mems_allowed=0,global_oom,task_memcg=/system.slice/docker-${ID}.scope,task=node,pid=3321,uid=0`,
    'Out of memory: Killed process 3321 (node) total-vm:1208040kB, anon-rss:812004kB, file-rss:0kB, shmem-rss:0kB, UID:0 pgtables:2036kB oom_score_adj:0',
  ]));
  t.equal(events.length, 1);
  t.equal(events[0]?.check, 'kernel.systemOom');
  t.equal(events[0]?.severity, 'critical');
  t.equal(events[0]?.containerId, ID);
  t.match(events[0]?.text, /node ran out of memory \(system OOM/);
});

t.test('kernel 4.14: "Task in ... killed as a result of limit of ..." names the cgroup of the old format', async (t) => {
  const cid = '0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c';
  const p = `/kubepods/burstable/pod7c9a2f3e-1b4d-4e5f-8a6b-9c0d1e2f3a4b/${cid}`;
  const { events } = eventsFromRecords(recs([
    `Task in ${p} killed as a result of limit of ${p}`,
    'memory: usage 262144kB, limit 262144kB, failcnt 9123',
    'Memory cgroup out of memory: Kill process 9012 (python3) score 1998 or sacrifice child',
    'Killed process 9012 (python3) total-vm:512340kB, anon-rss:258004kB, file-rss:4100kB, shmem-rss:0kB',
  ]));
  t.equal(events.length, 1, 'the announcement is not a second kill');
  t.equal(events[0]?.check, 'kernel.oom');
  t.equal(events[0]?.containerId, cid);
  t.equal(events[0]?.evidence['limit_bytes'], 262144 * 1024);
});

t.test('userspace writes to /dev/kmsg (any facility but 0) raise nothing, whatever they say', async (t) => {
  const spoof = ['EXT4-fs (sda1): Remounting filesystem read-only', 'INFO: task x:1 blocked for more than 120 seconds.', 'BUG: kernel NULL pointer dereference, address: 0000000000000008', 'Oops: 0000 [#1] PREEMPT SMP NOPTI', 'unregister_netdevice: waiting for lo to become free. Usage count = 1', 'EDAC MC1: 1 UE memory read error on DIMM#0', ...REAL_618];
  for (const facility of [1, 3, 23]) t.same(eventsFromRecords(recs(spoof, facility)).events, [], `facility ${facility}`);
});

t.test('events coalesce per cause and subject with a count and a rate, bounded, and resolve after lookback', async (t) => {
  const data = empty();
  const many = Array.from({ length: 4500 }, () => REAL_618).flat();
  const { events } = eventsFromRecords(recs(many));
  t.equal(events.length, 4500);
  coalesce(data, events, 256);
  t.equal(data.groups.length, 1, 'one group for one container and cause');
  t.equal(data.groups[0]?.count, 4500);
  const obs = evaluateKernel(data, NOW + 1000, config as never);
  t.equal(obs.length, 1);
  t.match(obs[0]?.message, /4,500 times since/);
  t.same(evaluateKernel(data, NOW + config.lookback + 1, config as never), [], 'quiet for lookback: resolved');

  const flood = empty();
  const devices = Array.from({ length: 1000 }, (_, i) => `I/O error, dev sd${i}, sector 1`);
  coalesce(flood, eventsFromRecords(recs(devices)).events, 256);
  t.equal(flood.groups.length, 256, 'groups bounded');
  t.equal(flood.dropped, 744, 'what was dropped is counted');
  t.ok(evaluateKernel(flood, NOW, config as never).some((o) => o.check === 'kernel.logLoss'), 'and said');
});

t.test('losses (ring overflow, callbacks suppressed) are evidence on the next finding and a finding of their own', async (t) => {
  const data = empty();
  const { events, suppressed } = eventsFromRecords(recs(['oom_kill_process: 5 callbacks suppressed', ...REAL_618]));
  t.equal(suppressed, 5);
  data.losses.push({ atMs: NOW, lost: 17, suppressed });
  coalesce(data, events, 256);
  const obs = evaluateKernel(data, NOW, config as never);
  const oom = obs.find((o) => o.check === 'kernel.oom');
  t.equal(oom?.evidence['kmsg_lost_records'], 17);
  t.equal(oom?.evidence['kmsg_suppressed_lines'], 5);
  t.match(obs.find((o) => o.check === 'kernel.logLoss')?.message, /17 overwritten in the ring/);
});

t.test('an oops is one critical finding with what it was about (the BUG line before it) and the process (the CPU line after it)', async (t) => {
  const oops = ['BUG: kernel NULL pointer dereference, address: 0000000000000008', '#PF: supervisor read access in kernel mode', 'Oops: 0000 [#1] PREEMPT SMP NOPTI', 'CPU: 1 UID: 0 PID: 4121 Comm: kworker/1:2 Not tainted 6.18.44-fc-v1272 #1 PREEMPT(none)'];
  const { events } = eventsFromRecords(recs(oops));
  t.equal(events.length, 1, 'four lines, one oops');
  t.same(events[0]?.evidence, { oops: 'Oops', oops_number: 1, cause: 'kernel NULL pointer dereference, address: 0000000000000008', task: 'kworker/1:2', pid: 4121, cpu: 1 });
  const data = empty();
  coalesce(data, events, 256);
  // A second one later (a general protection fault without a BUG line): the same finding, counted.
  coalesce(data, eventsFromRecords(recs(['Oops: general protection fault, probably for non-canonical address 0xdead000000000100: 0000 [#2] PREEMPT SMP NOPTI'], 0, NOW + 60_000)).events, 256);
  const obs = evaluateKernel(data, NOW + 60_000, config as never);
  t.equal(obs.length, 1);
  t.equal(obs[0]?.check, 'kernel.oops');
  t.equal(obs[0]?.severity, 'critical');
  t.match(obs[0]?.message, /^The kernel had an oops \(general protection fault, probably for non-canonical address 0xdead000000000100\)\. The kernel is now tainted.* \(2 times since/);
  const first = evaluateKernel({ ...empty(), groups: [] }, NOW, config as never);
  t.same(first, [], 'nothing before');
  const one = empty();
  coalesce(one, events, 256);
  t.match(evaluateKernel(one, NOW, config as never)[0]?.message, /^The kernel had an oops in kworker\/1:2 \(pid 4121, CPU 1\): kernel NULL pointer dereference, address: 0000000000000008\./);
  // A CPU line far from any oops (an OOM report's dump) names nothing.
  const far = eventsFromRecords(recs(['Oops: 0000 [#1] SMP', ...Array.from({ length: 20 }, () => 'x'), 'CPU: 0 PID: 1 Comm: init Not tainted 5.15.0 #1'])).events;
  t.equal(far[0]?.evidence['task'], undefined);
});

/** A dmesg capture from test/fixtures/kernel/oops/ as the kernel's messages, without dmesg's timestamps. */
function dmesg(name: string): string[] {
  return readFileSync(`test/fixtures/kernel/oops/${name}`, 'utf8').split('\n')
    .filter((l) => l !== '' && !l.startsWith('# '))
    .map((l) => l.replace(/^\[\s*\d+\.\d+\] /, ''));
}

/** Records numbered on from `seq`, as a later read of the same log has them. */
function recsFrom(seq: number, lines: string[], at = NOW): KmsgRecord[] {
  return lines.map((message, i) => ({ seq: seq + i, facility: 0, level: 0, usec: seq + i, wallMs: at, message }));
}

t.test('arm64: the "Unable to handle kernel" line 12 records before the "Internal error:" header is its cause', async (t) => {
  const lines = dmesg('arm64-6.1-null-deref.txt');
  t.equal(lines.findIndex((l) => l.startsWith('Internal error:')) - lines.findIndex((l) => l.startsWith('Unable to handle')), 12, 'the fixture has the distance arm64 prints');
  const { events } = eventsFromRecords(recs(lines));
  t.equal(events.length, 1, 'one oops');
  t.same(events[0]?.evidence, { oops: 'Oops', oops_number: 1, cause: 'unable to handle kernel NULL pointer dereference at virtual address 0000000000000008', task: 'containerd-shim', pid: 21874, cpu: 3 });
  const data = empty();
  coalesce(data, events, 256);
  t.match(evaluateKernel(data, NOW, config as never)[0]?.message, /^The kernel had an oops in containerd-shim \(pid 21874, CPU 3\): unable to handle kernel NULL pointer dereference at virtual address 0000000000000008\./);
});

t.test('die() headers of any reason are an oops: arm64 synchronous external abort, x86 alignment check, int3, 6.x general protection fault', async (t) => {
  const cases: [string, string, string, number][] = [
    ['arm64-6.1-sea.txt', 'synchronous external abort', 'kworker/0:2', 1432],
    ['x86-5.10-alignment-check.txt', 'alignment check', 'fio', 3198],
    ['x86-5.15-int3.txt', 'int3', 'bpftrace', 118204],
    ['x86-6.8-gpf-list-poison.txt', 'general protection fault, probably for non-canonical address 0xdead000000000122', 'kubelet', 2291],
  ];
  for (const [file, what, task, pid] of cases) {
    const { events } = eventsFromRecords(recs(dmesg(file)));
    t.equal(events.length, 1, `${file}: one event`);
    t.equal(events[0]?.check, 'kernel.oops', file);
    t.equal(events[0]?.severity, 'critical', file);
    t.same([events[0]?.evidence['oops'], events[0]?.evidence['task'], events[0]?.evidence['pid'], events[0]?.evidence['cause']], [what, task, pid, undefined], `${file}: what and who, no cause line`);
    t.match(events[0]?.text, new RegExp(`^the kernel had an oops \\(${what.replace(/[()]/g, '\\$&')}\\) in ${task.replace('/', '\\/')} \\(pid ${pid}, CPU \\d+\\)\\.`), file);
  }
});

t.test('an oops split across two reads of the log is still one oops with its cause and its process', async (t) => {
  // The pure join: what one read leaves pending, the next one finishes.
  const arm = dmesg('arm64-6.1-null-deref.txt');
  const at = arm.findIndex((l) => l.startsWith('Internal error:'));
  const first = eventsFromRecords(recsFrom(500, arm.slice(0, at)));
  t.same(first.events, [], 'the first read ends before the header');
  t.ok(first.oops?.cause, 'its cause is kept for the next read');
  const second = eventsFromRecords(recsFrom(500 + at, arm.slice(at)), first.oops);
  t.equal(second.events[0]?.evidence['cause'], 'unable to handle kernel NULL pointer dereference at virtual address 0000000000000008');
  t.equal(second.events[0]?.evidence['task'], 'containerd-shim');
  t.equal(second.oops, undefined, 'nothing left pending once the report has ended');
  // Sequence numbers start again at a reboot: a cause from the last boot joins nothing.
  t.equal(eventsFromRecords(recsFrom(3, arm.slice(at)), first.oops).events[0]?.evidence['cause'], undefined);

  // The collector keeps it across runs: the cause in one read, the header in the next; then a header at
  // the end of a read and its CPU line at the start of the next.
  const gpf = dmesg('x86-6.8-gpf-list-poison.txt');
  let batch: KmsgRecord[] = [];
  const kmsg = { read: async () => ({ status: 'ok' as const, records: batch, lost: 0, overflows: 0 }), health: () => ({ ok: true, totals: {} }) };
  const runtime = { settleMs: 0, ping: async () => [], snapshot: async () => ({ runtimes: [], containers: [], takenAt: NOW }) };
  const run = async (previous: unknown, now: number) => {
    const r = await kernel.collect({ ...contextFor(kernel, 'test/fixtures/host/debian12-vm', { previous }), runtime, kmsg, now: () => now } as never);
    if (r.kind !== 'ok') throw new Error(r.kind);
    return r;
  };
  batch = recsFrom(500, arm.slice(0, at));
  const r1 = await run(undefined, NOW);
  t.same(r1.observations, [], 'a cause alone is no finding');
  batch = recsFrom(500 + at, arm.slice(at));
  const r2 = await run(r1.data, NOW + 1000);
  t.match(r2.observations.find((o) => o.check === 'kernel.oops')?.message, /^The kernel had an oops in containerd-shim \(pid 21874, CPU 3\): unable to handle kernel NULL pointer dereference/);
  batch = recsFrom(2000, gpf.slice(0, 1), NOW + 60_000);
  const r3 = await run(r2.data, NOW + 60_000);
  t.equal(r3.observations.find((o) => o.check === 'kernel.oops')?.evidence['task'], undefined, 'the header alone: no process yet');
  batch = recsFrom(2001, gpf.slice(1), NOW + 60_000);
  const r4 = await run(r3.data, NOW + 61_000);
  const oops = r4.observations.find((o) => o.check === 'kernel.oops');
  t.equal(oops?.evidence['count'], 2, 'two oopses, one finding');
  t.same([oops?.evidence['oops'], oops?.evidence['task'], oops?.evidence['pid'], oops?.evidence['cpu']], ['general protection fault, probably for non-canonical address 0xdead000000000122', 'kubelet', 2291, 6]);
  t.match(oops?.message, /^The kernel had an oops \(general protection fault, probably for non-canonical address 0xdead000000000122\) in kubelet \(pid 2291, CPU 6\)\./);
});

t.test('a cause line joins no header once its report has ended or another has begun', async (t) => {
  // A "kernel BUG at" whose own header the ring lost, then a WARN's report and an unrelated oops: not its cause.
  const ended = eventsFromRecords(recs(['kernel BUG at fs/ext4/inode.c:2708!', '---[ end trace 0000000000000000 ]---', 'Oops: 0000 [#2] SMP PTI'])).events;
  t.equal(ended[0]?.evidence['cause'], undefined, 'after "end trace"');
  const cut = eventsFromRecords(recs(['BUG: unable to handle page fault for address: ffffb1e2c0a3f000', '------------[ cut here ]------------', 'alignment check: 0000 [#2] SMP'])).events;
  t.equal(cut[0]?.evidence['cause'], undefined, 'after "cut here"');
  const far = eventsFromRecords(recs(['Unable to handle kernel paging request at virtual address ffff800081e3c000', ...Array.from({ length: 45 }, () => '  ESR = 0x0000000096000007'), 'Internal error: Oops: 0000000096000007 [#1] SMP'])).events;
  t.equal(far[0]?.evidence['cause'], undefined, 'more than 40 records before');
  const pending = eventsFromRecords(recs(['Unable to handle kernel paging request at virtual address ffff800081e3c000', ...Array.from({ length: 45 }, () => 'x')]));
  t.equal(pending.oops, undefined, 'a cause 40 records old is not kept for the next read');
});

t.test('a network device the kernel cannot free is one finding per device, its repeats counted; memory errors by severity; ext4 warnings apart from errors', async (t) => {
  const data = empty();
  const every10s = Array.from({ length: 30 }, (_, i) => ({ seq: 100 + i, facility: 0, level: 0, usec: i, wallMs: NOW + i * 10_000, message: 'unregister_netdevice: waiting for lo to become free. Usage count = 1' }));
  coalesce(data, eventsFromRecords(every10s).events, 256);
  coalesce(data, eventsFromRecords(recs(['unregister_netdevice: waiting for eth0 to become free. Usage count = 2'])).events, 256);
  const net = evaluateKernel(data, NOW + 300_000, config as never).filter((o) => o.check === 'kernel.netdevice');
  t.same(net.map((o) => o.subject).sort(), ['netdev:eth0', 'netdev:lo']);
  const lo = net.find((o) => o.subject === 'netdev:lo');
  t.equal(lo?.evidence['count'], 30);
  t.match(lo?.message, /^The kernel cannot free network device lo \(usage count 1\).*pods stuck in ContainerCreating or Terminating.*\(30 times since .*, 6\.2\/min\)$/);

  const hw = eventsFromRecords(recs(['EDAC MC0: 1 CE memory read error on CPU_SrcID#0_Ha#0_Chan#1_DIMM#0 (channel:1 slot:0)', 'EDAC MC1: 1 UE memory read error on CPU_SrcID#1_MC#0_Chan#0_DIMM#0 (channel:0 slot:0)', 'mce: [Hardware Error]: Machine check events logged'])).events;
  t.same(hw.map((e) => [e.check, e.subject, e.severity]), [['kernel.hardware', 'edac:MC0', 'warning'], ['kernel.hardware', 'edac:MC1:uncorrected', 'critical'], ['kernel.hardware', 'mce', 'warning']]);
  // A failing DIMM keeps logging corrected errors after an uncorrected one: the uncorrected stays critical.
  const mem = empty();
  coalesce(mem, eventsFromRecords(recs(['EDAC MC0: 1 UE memory read error on DIMM#0', 'EDAC MC0: 1 CE memory read error on DIMM#0'])).events, 256);
  t.same(evaluateKernel(mem, NOW, config as never).map((o) => [o.subject, o.severity]), [['edac:MC0:uncorrected', 'critical'], ['edac:MC0', 'warning']]);
  // kdump loaded (RHEL, OpenShift): the process is still its comm.
  const kd = eventsFromRecords(recs(['Oops: 0000 [#1] SMP', 'CPU: 7 PID: 31337 Comm: java Kdump: loaded Tainted: G        W         4.18.0 #1'])).events;
  t.equal(kd[0]?.evidence['task'], 'java');

  const fsd = empty();
  coalesce(fsd, eventsFromRecords(recs(['EXT4-fs error (device sda1): ext4_lookup:1855: inode #2: comm ls: deleted inode referenced: 12', 'EXT4-fs warning (device sda1): ext4_dx_add_entry:2461: Directory (ino: 1234) index full, reach max htree level :2'])).events, 256);
  const fsObs = evaluateKernel(fsd, NOW, config as never);
  t.same(fsObs.map((o) => [o.subject, o.severity]), [['sda1', 'critical'], ['sda1:warning', 'warning']], 'a warning after an error does not lower it');
});

t.test('a healthy busy node logs a lot and raises nothing', async (t) => {
  const busy = [
    'docker0: port 1(veth1a2b3c4) entered blocking state',
    'docker0: port 1(veth1a2b3c4) entered forwarding state',
    'eth0: renamed from veth9f8e7d6',
    'overlayfs: upper fs does not support tmpfile.',
    'EXT4-fs (loop0): mounted filesystem e6b29c4d r/w with ordered data mode. Quota mode: none.',
    'oom_control is deprecated and will be removed. Please report your usecase to linux-mm-@kvack.org if you depend on this functionality.',
    'IPv6: ADDRCONF(NETDEV_CHANGE): veth1a2b3c4: link becomes ready',
    'I/O error, dev fd0, sector 0 op 0x0:(READ) flags 0x0 phys_seg 1 prio class 0',
    'blk_update_request: I/O error, dev sr0, sector 0 op 0x0:(READ) flags 0x0 phys_seg 1 prio class 0',
    // An OOM report's and a hung task's stack dumps name their CPU and process too: no oops without its header.
    'CPU: 1 UID: 0 PID: 27771 Comm: sh Not tainted 6.18.44-fc-v1272 #1 PREEMPT(none)',
    'EDAC MC0: Giving out device to module skx_edac controller Skylake Socket#0 IMC#0: DEV 0000:3a:0a.0 (INTERRUPT)',
    'EXT4-fs (sda1): warning: mounting fs with errors, running e2fsck is recommended',
  ];
  t.same(eventsFromRecords(recs(Array.from({ length: 1000 }, () => busy).flat())).events, []);
});

t.test('a full conntrack table: the namespace the 6.18 line names is the subject, and where to look', async (t) => {
  const { events } = eventsFromRecords(recs(['nf_conntrack: nf_conntrack: table full in netns 4026532173, dropping packet', 'nf_conntrack: table full, dropping packet']));
  t.equal(events.length, 2);
  t.equal(events[0]?.check, 'kernel.conntrackFull');
  t.equal(events[0]?.subject, 'nf_conntrack:netns:4026532173');
  t.same(events[0]?.evidence, { netns: 4026532173 });
  t.match(events[0]?.remedy, /lsns -t net .*4026532173.*nsenter -t PID -n cat \/proc\/sys\/net\/netfilter\/nf_conntrack_count/);
  t.equal(events[1]?.subject, 'nf_conntrack', 'an older kernel does not say which namespace');
});

t.test('cgroup files: memory cgroup of a process (v1 and v2), oom_kill counters, limits', async (t) => {
  t.same(memcgOf(`12:pids:/docker/${ID}\n4:memory:/docker/${ID}\n0::/system.slice/x\n`), { path: `/docker/${ID}`, v2: false });
  t.same(memcgOf(`0::/kubepods.slice/kubepods-pod1.slice/cri-containerd-${ID}.scope\n`), { path: `/kubepods.slice/kubepods-pod1.slice/cri-containerd-${ID}.scope`, v2: true });
  t.equal(parseOomKillCounter('oom_kill_disable 0\nunder_oom 0\noom_kill 3\n'), 3, 'v1 memory.oom_control');
  t.equal(parseOomKillCounter('low 0\nhigh 0\nmax 12\noom 2\noom_kill 2\noom_group_kill 0\n'), 2, 'v2 memory.events');
  t.equal(parseOomKillCounter('oom_kill_disable 0\nunder_oom 0\n'), undefined, 'kernels before 4.13 have no counter');
  t.equal(parseMemoryLimit('max\n'), undefined);
  t.equal(parseMemoryLimit('9223372036854771712\n'), undefined, 'v1 unlimited');
  t.equal(parseMemoryLimit('16777216\n'), 16777216);
});

function hogArgs(name: string, extra: string[] = []): string[] {
  return ['run', '-d', '--network', 'none', '--memory', '16m', '--memory-swap', '16m', '--name', name,
    '--label', 'io.kubernetes.pod.name=hog-pod', '--label', 'io.kubernetes.pod.namespace=team-a', '--label', 'io.kubernetes.container.name=hog', '--label', 'io.kubernetes.pod.uid=7c9a2f3e-1b4d-4e5f-8a6b-9c0d1e2f3a4b', ...extra, TEST_IMAGE];
}

async function runKernel(env: ReturnType<typeof envFor>, previous: unknown): Promise<{ obs: Observation[]; data: unknown }> {
  const ctx = { ...contextFor(kernel, '/', { env, previous }), kmsg: env.kmsg };
  const r = await kernel.collect(ctx as never);
  if (r.kind !== 'ok') throw new Error(`${r.kind}: ${r.reason}`);
  return { obs: r.observations, data: r.data };
}

t.test('real kernel, real docker: an OOM-killed container is named by pod and container; a child OOM too; a spoof raises nothing', async (t) => {
  if (!requireRuntime(t)) return;
  ensureTestImage();
  const env = envFor('/');
  env.kmsg = new KmsgReader({ host: env.host });
  t.teardown(() => env.kmsg?.stop());
  let { data } = await runKernel(env, undefined);

  // The spoof first: nothing, even though it says what a real error says.
  appendFileSync('/dev/kmsg', '<2>EXT4-fs (nwspoof0): Remounting filesystem read-only\n');
  appendFileSync('/dev/kmsg', '<3>INFO: task spoof:1 blocked for more than 120 seconds.\n');
  const spoofed = await runKernel(env, data);
  data = spoofed.data;
  // Other tests on this machine make real read-only remounts (loop devices): only the spoofed subjects count here.
  t.notOk(spoofed.obs.some((o) => (o.check === 'kernel.fsReadonly' && o.subject === 'nwspoof0') || (o.check === 'kernel.hungTask' && o.subject === 'task:spoof')), 'userspace cannot raise a kernel finding');

  // pid 1 is the hog (it sleeps first so the agent has seen the container).
  const name = `nw-kernel-oom-${process.pid}`;
  dockerTry('rm', '-f', name);
  t.teardown(() => void dockerTry('rm', '-f', name));
  const id = execFileSync('docker', [...hogArgs(name), 'sh', '-c', 'sleep 2; x=aaaaaaaaaaaaaaaa; while true; do x="$x$x"; done'], { encoding: 'utf8' }).trim();
  let named: Observation | undefined;
  t.ok(await eventually(async () => {
    const r = await runKernel(env, data);
    data = r.data;
    named = r.obs.find((o) => o.check === 'kernel.oom' && o.subject === id);
    return named !== undefined;
  }, 30_000), 'the OOM kill is found');
  t.equal(named?.workload?.pod, 'hog-pod');
  t.equal(named?.workload?.namespace, 'team-a');
  t.equal(named?.workload?.containerName, 'hog');
  t.match(named?.message, /Container hog of pod team-a\/hog-pod: The kernel OOM-killed process sh \(pid \d+\) using [\d.]+ MiB at its container's memory limit of 16\.0 MiB/);

  // A one-shot check afterwards (fresh reader, no cursor) names it too.
  const fresh = envFor('/');
  const once = await runKernel(fresh, undefined);
  fresh.kmsg?.stop();
  t.ok(once.obs.some((o) => o.check === 'kernel.oom' && o.subject === id), 'check names the kill from the ring (lookback)');

  // A child process killed while pid 1 lives on.
  const child = `nw-kernel-child-${process.pid}`;
  dockerTry('rm', '-f', child);
  t.teardown(() => void dockerTry('rm', '-f', child));
  const cid = execFileSync('docker', [...hogArgs(child), 'sh', '-c', 'sleep 2; sh -c \'x=aaaaaaaaaaaaaaaa; while true; do x="$x$x"; done\'; sleep 600'], { encoding: 'utf8' }).trim();
  let childObs: Observation | undefined;
  t.ok(await eventually(async () => {
    const r = await runKernel(env, data);
    data = r.data;
    childObs = r.obs.find((o) => o.check === 'kernel.oom' && o.subject === cid);
    return childObs !== undefined;
  }, 30_000), 'the child OOM is found');
  t.equal(childObs?.evidence['child_process'], true);
  t.match(childObs?.message, /child process: the container's main process \(pid \d+\) lives on/);
  t.equal(spawnSync('docker', ['inspect', '-f', '{{.State.Running}}', child], { encoding: 'utf8' }).stdout.trim(), 'true', 'pid 1 survived');
});

t.test('a hung task is believed of its pid only while that pid is the same process (comm, started before it was blocked)', async (t) => {
  // /proc/PID/stat of a shell started 1000 ticks (10 s) after boot; the line came at 20 s, blocked for more than 2 s.
  const stat = (comm: string, start: number) => `5896 (${comm}) D 5890 5896 5890 0 -1 4194560 120 0 0 0 0 0 0 0 20 0 1 0 ${start} 2 0 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0`;
  t.ok(isHungProcess(stat('sh', 1000), 'sh', 2, 20_000_000), 'the same shell');
  t.notOk(isHungProcess(stat('dd', 1000), 'sh', 2, 20_000_000), 'another command under the pid');
  t.notOk(isHungProcess(stat('sh', 1950), 'sh', 2, 20_000_000), 'a shell started after the task had been blocked (19.5 s, past 20 - 2 s and a second of slack): the pid was reused');
  t.ok(isHungProcess(stat('a) b', 1000), 'a) b', 2, 20_000_000), 'a comm with a parenthesis and a space');
  t.notOk(isHungProcess(undefined, 'sh', 2, 20_000_000), 'the process is gone');
  t.notOk(isHungProcess('garbage', 'sh', 2, 20_000_000));
});

t.test('real kernel, real docker: a process in a container blocked on a frozen filesystem is a hung task named with its pod and container', async (t) => {
  if (!requireRuntime(t)) return;
  ensureTestImage();
  const sysctl = (name: string) => `/proc/sys/kernel/${name}`;
  const before = { timeout: readFileSync(sysctl('hung_task_timeout_secs'), 'utf8').trim(), warnings: readFileSync(sysctl('hung_task_warnings'), 'utf8').trim() };
  const fs = makeLoopFs(32);
  const name = `nw-kernel-hung-${process.pid}`;
  let frozen = false;
  t.teardown(() => {
    if (frozen) spawnSync('fsfreeze', ['-u', fs.mountPoint]);
    writeFileSync(sysctl('hung_task_timeout_secs'), before.timeout);
    writeFileSync(sysctl('hung_task_warnings'), before.warnings);
    dockerTry('rm', '-f', name);
    fs.cleanup();
  });
  const env = envFor('/');
  env.kmsg = new KmsgReader({ host: env.host });
  t.teardown(() => env.kmsg?.stop());
  let { data } = await runKernel(env, undefined);
  dockerTry('rm', '-f', name);
  const id = execFileSync('docker', ['run', '-d', '--network', 'none', '--name', name, '-v', `${fs.mountPoint}:/data`,
    '--label', 'io.kubernetes.pod.name=hung-pod', '--label', 'io.kubernetes.pod.namespace=team-b', '--label', 'io.kubernetes.container.name=writer', '--label', 'io.kubernetes.pod.uid=2d3e4f5a-6b7c-4d8e-9f0a-1b2c3d4e5f6a',
    TEST_IMAGE, 'sleep', '600'], { encoding: 'utf8' }).trim();
  // The kernel reports a task after hung_task_timeout_secs in uninterruptible sleep; -1 warnings: no cap while the test runs.
  writeFileSync(sysctl('hung_task_timeout_secs'), '2');
  writeFileSync(sysctl('hung_task_warnings'), '-1');
  execFileSync('fsfreeze', ['-f', fs.mountPoint]);
  frozen = true;
  // A write to a frozen filesystem waits in sb_start_write, in D state, until it thaws.
  execFileSync('docker', ['exec', '-d', name, 'sh', '-c', 'echo x > /data/hung']);
  let hung: Observation | undefined;
  t.ok(await eventually(async () => {
    const r = await runKernel(env, data);
    data = r.data;
    hung = r.obs.find((o) => o.check === 'kernel.hungTask' && o.subject === `task:sh@${id}`);
    return hung !== undefined;
  }, 30_000), 'the real "blocked for more than" line is read and its process found in the container');
  t.equal(hung?.workload?.pod, 'hung-pod');
  t.equal(hung?.workload?.namespace, 'team-b');
  t.equal(hung?.workload?.containerName, 'writer');
  t.match(hung?.message, /^Container writer of pod team-b\/hung-pod: The kernel reports task sh \(pid \d+\) blocked in uninterruptible sleep \(D state\) for more than \d+ seconds/);
  t.match(hung?.remedy, new RegExp(`^cat /proc/\\d+/stack; docker inspect --format '\\{\\{json \\.Mounts\\}\\}' ${id.slice(0, 12)} `));
  const pid = Number(hung?.evidence['pid']);
  t.match(readFileSync(`/proc/${pid}/stack`, 'utf8'), /percpu_rwsem_wait|sb_start_write|mnt_want_write/, "the named pid is the one blocked on the frozen filesystem");
  // Thawed, the write completes.
  execFileSync('fsfreeze', ['-u', fs.mountPoint]);
  frozen = false;
  t.ok(await eventually(() => spawnSync('docker', ['exec', name, 'cat', '/data/hung'], { encoding: 'utf8' }).stdout.trim() === 'x', 10_000), 'the write completes once the filesystem thaws');
});

t.test('cgroup v2, systemd driver (a host tree laid out as a v2 node has it): limit from memory.max, a kill the log lost counted from memory.events', async (t) => {
  const { mkdtempSync, mkdirSync, writeFileSync, rmSync } = await import('node:fs');
  const os = await import('node:os');
  const path = await import('node:path');
  const root = mkdtempSync(path.join(os.tmpdir(), 'nw-cg2-'));
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  const uid = '1a2b3c4d-5e6f-7a8b-9c0d-1e2f3a4b5c6d';
  const cg = `/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod${uid.replace(/-/g, '_')}.slice/cri-containerd-${ID}.scope`;
  mkdirSync(path.join(root, 'proc', '4242'), { recursive: true });
  mkdirSync(path.join(root, 'proc', 'sys', 'kernel', 'random'), { recursive: true });
  writeFileSync(path.join(root, 'proc', 'sys', 'kernel', 'random', 'boot_id'), '0c1d2e3f-0000-4000-8000-000000000000\n');
  writeFileSync(path.join(root, 'proc', '4242', 'cgroup'), `0::${cg}\n`);
  const dir = path.join(root, 'sys', 'fs', 'cgroup', ...cg.split('/').filter(Boolean));
  mkdirSync(dir, { recursive: true });
  writeFileSync(path.join(dir, 'memory.max'), '536870912\n');
  const events = (n: number): string => `low 0\nhigh 0\nmax 41\noom ${n}\noom_kill ${n}\noom_group_kill 0\n`;
  writeFileSync(path.join(dir, 'memory.events'), events(0));

  const container = { id: ID, name: 'java', manager: 'containerd', namespace: 'k8s.io', image: 'app', labels: {}, storage: {},
    workload: { containerId: ID, containerName: 'java', pod: 'shop-0', namespace: 'shop', podUid: uid }, containerd: { known: true, task: { status: 'RUNNING', pid: 4242, exitStatus: 0 } } };
  // The runtime cannot be a v2 containerd here (this VM is v1): its model is handed in as the agent builds it.
  const runtime = { settleMs: 0, ping: async () => [], snapshot: async () => ({ runtimes: [], containers: [container], takenAt: Date.now() }) };
  let batch: KmsgRecord[] = [];
  const kmsg = { read: async () => ({ status: 'ok' as const, records: batch, lost: 0, overflows: 0 }), health: () => ({ ok: true, totals: {} }) };
  const run = async (previous: unknown) => {
    const ctx = { ...contextFor(kernel, root, { previous }), runtime, kmsg, now: () => NOW + 1000 };
    const r = await kernel.collect(ctx as never);
    if (r.kind !== 'ok') throw new Error(r.kind);
    return r;
  };
  const first = await run(undefined);
  t.same(first.observations, [], 'the counter is a baseline at first sight');

  writeFileSync(path.join(dir, 'memory.events'), events(2));
  batch = recs([
    `oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=cri-containerd-${ID}.scope,mems_allowed=0,oom_memcg=${cg},task_memcg=${cg},task=java,pid=48213,uid=1000`,
    'Memory cgroup out of memory: Killed process 48213 (java) total-vm:4839212kB, anon-rss:523812kB, file-rss:18232kB, shmem-rss:0kB, UID:1000 pgtables:1400kB oom_score_adj:969',
  ]);
  const second = await run(first.data);
  const oom = second.observations.find((o) => o.check === 'kernel.oom');
  t.equal(oom?.subject, ID);
  t.equal(oom?.workload?.pod, 'shop-0');
  t.equal(oom?.evidence['count'], 2, 'two kills: one from the log, one only the counter saw');
  t.match(oom?.message, /^Container java of pod shop\/shop-0: /);
  t.equal(oom?.evidence['source'], 'memory.events oom_kill', 'the last one came from the counter');
  t.equal(oom?.evidence['limit_bytes'], 512 * 1024 * 1024, 'the limit read from memory.max');
  t.match(oom?.message, /memory limit of 512\.0 MiB/);
  t.equal(second.observations.length, 1, 'nothing else');
  batch = [];
  const third = await run(second.data);
  t.equal(third.observations.find((o) => o.check === 'kernel.oom')?.evidence['count'], 2, 'a counter that stays put adds nothing');
});

t.test('who the containers are: asked of the runtime every 30 s at most, and at once on an OOM line; in between, any newer view another collector read is used without asking', async (t) => {
  const root = 'test/fixtures/host/debian12-vm';
  const container = (id: string, name: string) => ({ id, name, manager: 'docker', image: 'app', labels: {}, storage: {}, workload: { containerId: id, containerName: name }, docker: { running: true, pid: 0 } });
  let asked = 0;
  let newest: { runtimes: never[]; containers: unknown[]; takenAt: number } | undefined;
  let clock = NOW;
  const runtime = {
    settleMs: 0,
    ping: async () => [],
    snapshot: async () => {
      asked++;
      return { runtimes: [], containers: [container(ID, 'own-read')], takenAt: clock };
    },
    latest: () => newest,
  };
  let batch: KmsgRecord[] = [];
  const kmsg = { read: async () => ({ status: 'ok' as const, records: batch, lost: 0, overflows: 0 }), health: () => ({ ok: true, totals: {} }) };
  const run = async (previous: unknown) => {
    const r = await kernel.collect({ ...contextFor(kernel, root, { previous }), runtime, kmsg, now: () => clock } as never);
    if (r.kind !== 'ok') throw new Error(r.kind);
    return r.data as KernelData;
  };
  let data = await run(undefined);
  t.equal(asked, 1, 'the first run asks');
  clock += 1000;
  const other = 'b'.repeat(64);
  newest = { runtimes: [], containers: [container(other, 'borrowed')], takenAt: clock - 100 };
  data = await run(data);
  t.equal(asked, 1, 'a second later: not asked again');
  t.ok(data.identities.some(([id, who]) => id === other && who.name === 'borrowed'), "another collector's newer view names its containers");
  clock += 20_000;
  data = await run(data);
  t.equal(asked, 1, '21 s after the first read: still not asked');
  clock += 10_000;
  data = await run(data);
  t.equal(asked, 2, '31 s after it: asked');
  clock += 1000;
  batch = recs([`oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=docker-${ID}.scope,mems_allowed=0,oom_memcg=/docker/${ID},task_memcg=/docker/${ID},task=java,pid=48213,uid=0`], 0, clock);
  data = await run(data);
  t.equal(asked, 3, 'an OOM line: asked at once, to name its container');
});
