import t from 'tap';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import fc from 'fast-check';
import { containerIdInMemcg, isRootMemcg, parseKernelLine } from '../../collectors/kernel-rules.js';

const LINES = readFileSync(path.resolve('test/fixtures/kernel/kmsg-lines.txt'), 'utf8')
  .split('\n')
  .filter((l) => l !== '' && !l.startsWith('#'))
  .map((l) => {
    const [version, kind, ...rest] = l.split('|');
    return { version: version!, kind: kind!, message: rest.join('|') };
  });

t.test('every captured line from every kernel parses to the kind it is', async (t) => {
  t.ok(new Set(LINES.map((l) => l.version)).size >= 4, 'lines from several kernels');
  for (const l of LINES) {
    const fact = parseKernelLine(l.message);
    t.equal(fact?.kind ?? '-', l.kind, `${l.version}: ${l.message.slice(0, 80)}`);
  }
});

t.test('the OOM lines of this kernel (6.18) give the memcg, victim, pid and RSS', async (t) => {
  const kill = parseKernelLine(LINES.find((l) => l.version === '6.18' && l.kind === 'oom-kill')!.message);
  t.equal(kill?.kind, 'oom-kill');
  if (kill?.kind !== 'oom-kill') return;
  t.equal(kill.constraint, 'CONSTRAINT_MEMCG');
  t.match(kill.taskMemcg, /^\/docker\/[0-9a-f]{64}$/);
  t.equal(kill.task, 'sh');
  t.ok(kill.pid! > 0);
  const killed = parseKernelLine(LINES.find((l) => l.version === '6.18' && l.kind === 'oom-killed')!.message);
  t.equal(killed?.kind === 'oom-killed' && killed.memcg, true, 'Memory cgroup out of memory: a limit, not the node');
  t.equal(killed?.kind === 'oom-killed' ? killed.rssKb : 0, 16032 + 1520 + 0, 'RSS is anon + file + shmem');
});

t.test('a system OOM (CONSTRAINT_NONE, global_oom) and the old "Kill process ... or sacrifice child" announcement', async (t) => {
  const sys = parseKernelLine(LINES.find((l) => l.message.includes('CONSTRAINT_NONE'))!.message);
  t.equal(sys?.kind === 'oom-kill' && sys.constraint, 'CONSTRAINT_NONE');
  const announce = parseKernelLine('Out of memory: Kill process 2710 (mysqld) score 866 or sacrifice child');
  t.equal(announce?.kind === 'oom-killed' && announce.scoreOnly, true, 'an announcement, not the kill');
});

t.test('memcg paths name the container in every cgroup layout', async (t) => {
  const id = 'a0cb83672e25eeef35e132b119735ece42125c8f280c4f2b15943228ab68892c';
  for (const p of [
    `/docker/${id}`,
    `/system.slice/docker-${id}.scope`,
    `/kubepods/burstable/pod7c9a2f3e-1b4d-4e5f-8a6b-9c0d1e2f3a4b/${id}`,
    `/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod7c9a2f3e_1b4d_4e5f_8a6b_9c0d1e2f3a4b.slice/cri-containerd-${id}.scope`,
    `/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod7c9a2f3e_1b4d_4e5f_8a6b_9c0d1e2f3a4b.slice/docker-${id}.scope`,
    `/kubepods/besteffort/pod7c9a2f3e-1b4d-4e5f-8a6b-9c0d1e2f3a4b/crio-${id}`,
  ]) t.equal(containerIdInMemcg(p), id, p);
  t.equal(containerIdInMemcg('/user.slice/user-0.slice/session-3.scope'), undefined, 'a host process: no container');
  t.equal(containerIdInMemcg('/kubepods.slice/kubepods-pod1.slice'), undefined);
  t.ok(isRootMemcg('/'));
  t.notOk(isRootMemcg('/docker/x'));
});

t.test('hostile lines: huge, binary, near misses never throw and never match falsely', async (t) => {
  t.equal(parseKernelLine('x'.repeat(100_000)), undefined);
  t.equal(parseKernelLine('EXT4-fs (sda1): mounted filesystem with ordered data mode'), undefined, 'a mount is not an error');
  t.equal(parseKernelLine('docker0: port 1(veth1a2b) entered blocking state'), undefined, 'container churn says nothing');
  t.equal(parseKernelLine('oom_reaper: reaped process 28830 (sh), now anon-rss:0kB, file-rss:0kB, shmem-rss:0kB'), undefined, 'the reaper is not a second kill');
  fc.assert(fc.property(fc.string({ maxLength: 400 }), (s) => {
    parseKernelLine(s);
    parseKernelLine(`oom-kill:${s}`);
    parseKernelLine(`Memory cgroup out of memory: Killed process ${s}`);
    containerIdInMemcg(s);
    return true;
  }));
});

t.test('conntrack table full: the 6.18 line names the network namespace, older ones do not', async (t) => {
  t.same(parseKernelLine('nf_conntrack: nf_conntrack: table full in netns 4026532173, dropping packet'), { kind: 'conntrack-full', netns: 4026532173 });
  t.same(parseKernelLine('nf_conntrack: table full, dropping packet'), { kind: 'conntrack-full' });
  t.equal(parseKernelLine('nf_conntrack: table full in netns x, dropping packet'), undefined, 'a namespace that is not a number is no line we know');
});

t.test('die() headers of every reason: what the oops was and its count, from arm64 and x86 alike; a driver line with ": 0000 [#1]" in it is none', async (t) => {
  const cases: [string, string, number][] = [
    ['Internal error: synchronous external abort: 0000000096000010 [#1] PREEMPT SMP', 'synchronous external abort', 1],
    ['Internal error: Oops - SP/PC alignment exception: 000000008a000000 [#1] PREEMPT SMP', 'SP/PC alignment exception', 1],
    ['Internal error: Oops - BUG: 00000000f2000800 [#1] SMP', 'BUG', 1],
    ['Internal error: undefined instruction: 0000000002000000 [#3] SMP', 'undefined instruction', 3],
    ['Internal error: Oops: 0000000096000006 [#1] PREEMPT SMP', 'Oops', 1],
    ['alignment check: 0000 [#1] SMP', 'alignment check', 1],
    ['int3: 0000 [#1] PREEMPT SMP NOPTI', 'int3', 1],
    ['kernel stack overflow (double-fault): 0000 [#1] SMP PTI', 'kernel stack overflow (double-fault)', 1],
    ['Oops: general protection fault, probably for non-canonical address 0xdead000000000122: 0000 [#1] PREEMPT SMP NOPTI', 'general protection fault, probably for non-canonical address 0xdead000000000122', 1],
    ['Oops: 0002 [#12] SMP PTI', 'Oops', 12],
    // ppc64 (its flags, "LE PAGE_SIZE=64K MMU=Radix SMP ...", are the next record): matched before 3376961
    ['Oops: Kernel access of bad area, sig: 11 [#1]', 'Kernel access of bad area, sig', 1],
    ['Oops: Exception in kernel mode, sig: 5 [#2]', 'Exception in kernel mode, sig', 2],
  ];
  for (const [line, what, number] of cases) t.same(parseKernelLine(line), { kind: 'oops', what, number }, line);
  for (const line of [
    'mlx5_core 0000:3b:00.0: cmd_work_handler: 0000 [#1] pending',
    'nvme nvme0: I/O 12 QID 3 timeout, aborting: 0000 [#1]',
    'foo: 0000 [#1] retried, link up',
    '0000 [#1] SMP',
    'Oops: 0000 [#x] SMP',
    'int3: 00000000000000000 [#1] SMP',
  ]) t.equal(parseKernelLine(line), undefined, line);
});
