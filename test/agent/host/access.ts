// @live: uses the real machine through test/helpers/live.ts or runtime.ts, so it runs serially
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { checkHostRoot, createHostAccess, parseStatfsOutput, readsInPlace } from '../../../agent/host/access.js';
import { exec } from '../../../agent/host/exec.js';
import { nativeStatfs } from '../../../agent/host/attrs.js';
import type { Exec } from '../../../collectors/types.js';
import fc from 'fast-check';
import { fillTo, hungFuseMount, makeLoopFs, requireLive } from '../../helpers/live.js';

const VM = path.resolve('test/fixtures/host/debian12-vm');

t.test('every path is rooted at --host-root', async (t) => {
  const host = createHostAccess({ root: 'test/fixtures/host/debian12-vm', exec });
  t.equal(host.root, VM, 'the root is made absolute');
  t.equal(host.procPath(5038, 'comm'), `${VM}/proc/5038/comm`);
  t.equal(host.procPath(), `${VM}/proc`);
  t.equal(host.sysPath('fs', 'cgroup'), `${VM}/sys/fs/cgroup`);
  t.equal(host.hostPath('/var/lib/docker'), `${VM}/var/lib/docker`);
  t.equal((await host.readText(host.procPath(5038, 'comm')))?.trim(), 'python3', 'reads the fixture, not this machine');
  t.same(await host.readBytes(host.procPath(5038, 'comm')), Buffer.from('python3\n'));
  t.same((await host.pids()).sort((a, b) => a - b), [1, 5038], 'pids are the numeric entries of <root>/proc only');
  t.ok((await host.list(host.procPath()))?.includes('self'));
  t.equal(await host.exists(host.procPath(1, 'mountinfo')), true);
  t.equal(await host.exists(host.procPath(2, 'mountinfo')), false);
});

t.test('a host path never leaves --host-root', async (t) => {
  const host = createHostAccess({ root: VM, exec });
  t.equal(host.hostPath('/dev/../../../etc/passwd'), `${VM}/etc/passwd`, '.. stops at the host root, as on the host');
  t.equal(host.hostPath('../../etc/shadow'), `${VM}/etc/shadow`);
  t.equal(host.hostPath('/'), `${VM}/`);
  t.equal(await host.readText(host.hostPath('/../../../../etc/hostname')), undefined, "this machine's /etc/hostname is not read through the fixture root");
  const bare = createHostAccess({ root: '/', exec });
  t.equal(bare.hostPath('/dev/../etc/hostname'), '/etc/hostname', 'on a bare host it is the path itself');
});

t.test('gone is undefined, other errors are thrown', async (t) => {
  const host = createHostAccess({ root: VM, exec });
  t.equal(await host.readText(host.procPath(999_999, 'cgroup')), undefined, 'a process that is not there');
  t.equal(await host.readBytes(host.procPath(5038, 'comm', 'x')), undefined, 'ENOTDIR');
  t.equal(await host.list(host.procPath(999_999, 'fd')), undefined);
  await t.rejects(host.readText(host.procPath(5038)), { code: 'EISDIR' }, 'a directory read as a file is an error, not "gone"');
});

t.test('--host-root must be a directory', async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'nw-root-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(path.join(dir, 'file'), 'x');
  t.equal(checkHostRoot(dir), dir);
  t.throws(() => checkHostRoot(path.join(dir, 'missing')), { code: 'NW_ERR_HOST_ROOT', message: /no such directory/ });
  t.throws(() => checkHostRoot(path.join(dir, 'file')), { code: 'NW_ERR_HOST_ROOT', message: /not a directory/ });
});

t.test('stat -f output: one NUL-ended record per path, names with spaces, junk skipped', async (t) => {
  const m = parseStatfsOutput('4096 100 50 40 1000 900 /mnt/a b\0garbage\0' + '4096 x 1 1 1 1 /bad\0' + '1024 10 5 4 100 90 /c\0');
  t.same([...m.keys()], ['/mnt/a b', '/c']);
  t.same(m.get('/mnt/a b'), { blockSize: 4096, blocks: 100, blocksFree: 50, blocksAvailable: 40, inodes: 1000, inodesFree: 900 });
});

/** Real exec, with a record of which paths each `stat -f` child was asked about. */
function recordingExec(): { exec: Exec; calls: string[][] } {
  const calls: string[][] = [];
  return {
    calls,
    exec: (file, args, opts) => {
      if (file === 'stat') calls.push(args.slice(args.indexOf('--') + 1));
      return exec(file, args, opts);
    },
  };
}

t.test('live: several statfs in one child, each as df sees it', async (t) => {
  if (!requireLive(t, { root: true, commands: ['mkfs.ext4', 'losetup'] })) return;
  const a = makeLoopFs(16);
  const b = makeLoopFs(32);
  t.teardown(() => {
    a.cleanup();
    b.cleanup();
  });
  fillTo(a, 50);
  const spaced = path.join(b.mountPoint, 'dir with space');
  mkdirSync(spaced);
  const rec = recordingExec();
  const host = createHostAccess({ root: '/', exec: rec.exec });
  const out = await host.statfs([a.mountPoint, spaced, '/nonexistent-nw'], 10_000);
  t.same(rec.calls, [[a.mountPoint, spaced, '/nonexistent-nw']], 'one stat child for all the paths');
  t.same(out.map((o) => [o.path, o.ok]), [[a.mountPoint, true], [spaced, true], ['/nonexistent-nw', false]], 'answers in the order asked');
  const df = (p: string) => spawnSync('stat', ['-f', '--printf=%b %a', p], { encoding: 'utf8' }).stdout.split(' ').map(Number);
  const [aBlocks, aAvail] = df(a.mountPoint);
  const oa = out[0];
  t.same(oa?.ok ? [oa.stats.blocks, oa.stats.blocksAvailable] : undefined, [aBlocks, aAvail], 'the numbers stat -f (and df) show');
  t.ok(oa?.ok && Math.abs(oa.stats.blocksAvailable / oa.stats.blocks - 0.5) < 0.02, 'half full after filling to 50%');
  const ob = out[1];
  t.same(ob?.ok ? ob.stats.blocks : undefined, df(b.mountPoint)[0], 'a name with spaces is matched to its own record');
  t.match(out[2], { ok: false, reason: 'error' });
});

t.test('live: a statfs that hangs times out alone; the other paths answer, then and after', async (t) => {
  if (!requireLive(t, { root: true, commands: ['mkfs.ext4', 'losetup'], paths: ['/dev/fuse'] })) return;
  const a = makeLoopFs(16);
  const hung = hungFuseMount();
  t.teardown(() => {
    hung.cleanup();
    a.cleanup();
  });
  const rec = recordingExec();
  const host = createHostAccess({ root: '/', exec: rec.exec });
  const paths = [a.mountPoint, hung.mountPoint, '/'];

  const first = await host.statfs(paths, 1000);
  t.same(first.map((o) => [o.path, o.ok]), [[a.mountPoint, true], [hung.mountPoint, false], ['/', true]], 'the hung mount does not stop the others');
  t.match(first[1], { reason: 'timeout', error: /statfs did not answer within 1000 ms/ });
  t.same(rec.calls.slice(1).map((c) => c.length), [1, 1, 1], 'after the batch timed out, each path was asked on its own');

  rec.calls.length = 0;
  const second = await host.statfs(paths, 1000);
  t.same(second.map((o) => o.ok), [true, false, true]);
  t.match(second[1], { reason: 'timeout', error: /not answering since/ });
  t.same(rec.calls, [[hung.mountPoint], [a.mountPoint, '/']], 'next cycle: the hung path is probed alone, the batch goes without it');

  hung.abort();
  rec.calls.length = 0;
  const third = await host.statfs(paths, 5000);
  t.same(third.map((o) => o.ok), [true, false, true]);
  t.match(third[1], { reason: 'error' }, 'once its daemon is gone it answers at once, with an error: no longer a hang');
  rec.calls.length = 0;
  await host.statfs(paths, 5000);
  t.same(rec.calls, [paths], 'and back in the batch');
});

t.test('live: native statfs (a thread per path): the numbers stat -f shows; a hung mount times out alone and is not asked again while stuck', async (t) => {
  if (!requireLive(t, { root: true, commands: ['mkfs.ext4', 'losetup'], paths: ['/dev/fuse'] })) return;
  const statfs = nativeStatfs();
  if (!statfs) {
    t.fail('the native module is not built (npm ci builds it)');
    return;
  }
  const a = makeLoopFs(16);
  const hung = hungFuseMount();
  t.teardown(() => {
    hung.cleanup();
    a.cleanup();
  });
  fillTo(a, 50);
  let asked = 0;
  const rec = recordingExec();
  const host = createHostAccess({
    root: '/',
    exec: rec.exec,
    statfs: (p) => {
      asked++;
      return statfs(p);
    },
  });
  const ok = await host.statfs([a.mountPoint, '/nonexistent-nw'], 5000);
  const df = spawnSync('stat', ['-f', '--printf=%S %b %a %c', a.mountPoint], { encoding: 'utf8' }).stdout.split(' ').map(Number);
  const oa = ok[0];
  t.same(oa?.ok ? [oa.stats.blockSize, oa.stats.blocks, oa.stats.blocksAvailable, oa.stats.inodes] : undefined, df, 'the numbers stat -f (and df) show');
  t.match(ok[1], { ok: false, reason: 'error' }, 'a missing path is an error, not a hang');

  const paths = [a.mountPoint, hung.mountPoint, '/'];
  asked = 0;
  const first = await host.statfs(paths, 1000);
  t.same(first.map((o) => [o.path, o.ok]), [[a.mountPoint, true], [hung.mountPoint, false], ['/', true]], 'the hung mount does not stop the others');
  t.match(first[1], { reason: 'timeout', error: /statfs did not answer within 1000 ms/ });
  t.equal(asked, 3, 'each path asked once, on its own thread');
  asked = 0;
  const second = await host.statfs(paths, 1000);
  t.same(second.map((o) => o.ok), [true, false, true]);
  t.match(second[1], { reason: 'timeout', error: /an earlier statfs has not returned/ });
  t.equal(asked, 2, 'the hung path is not asked again while its statfs is stuck (no pile-up of stuck threads)');
  hung.abort();
  let third = await host.statfs(paths, 5000);
  for (let i = 0; i < 50 && third[1]?.ok === false && third[1].reason === 'timeout'; i++) {
    await new Promise((r) => setTimeout(r, 100));
    third = await host.statfs(paths, 5000);
  }
  t.match(third[1], { ok: false, reason: 'error' }, 'once its daemon is gone the stuck statfs returns, and the path answers (with an error)');
  t.same(rec.calls, [], 'no stat -f child was started');
});

t.test('the kernel\'s own counters are read in place; what a stuck process, a mount or a disk can hold keeps the thread pool', async (t) => {
  for (const rel of ['loadavg', 'meminfo', 'stat', 'uptime', '123/stat', '123/status', 'self/cgroup', '9/comm', 'sys/kernel/pid_max', 'sys/net/netfilter/nf_conntrack_count', 'pressure/memory', 'net/sockstat', 'net/sockstat6']) {
    t.ok(readsInPlace('proc', rel), `/proc/${rel} in place`);
  }
  for (const rel of ['123/cmdline', '123/environ', '123/maps', '123/mountinfo', 'self/mountinfo', '1/mounts', 'kmsg', 'net/tcp', 'net/nf_conntrack', '123/task/124/stat', '../etc/passwd', 'sys/../../etc/shadow', '123/fd/4']) {
    t.notOk(readsInPlace('proc', rel), `/proc/${rel} through the pool`);
  }
  t.ok(readsInPlace('sys', 'fs/cgroup/kubepods.slice/memory.events'));
  t.notOk(readsInPlace('sys', 'fs/cgroup'));
  t.notOk(readsInPlace('sys', 'block/sda/stat'));
  t.notOk(readsInPlace('sys', 'fs/cgroup/../../../etc/passwd'));
  // Gone is undefined in place too, as through the pool.
  const host = createHostAccess({ root: '/', exec });
  t.equal(await host.readText(host.procPath(2 ** 22 + 1, 'stat')), undefined, 'a process that is gone');
  t.match(await host.readText(host.procPath('self', 'status')), /^Name:/m);
  t.ok((await host.pids()).includes(process.pid));
});

t.test('hostPath, procPath and sysPath build the same paths as path.join would, for any segments and any root', async (t) => {
  const segment = fc.oneof(fc.constantFrom('', '.', '..', 'a', 'b c', '1234', '..a', '.hidden', 'x/y', '/abs', 'd/../e', 'f/', '//'), fc.string({ maxLength: 6 }), fc.nat({ max: 99999 }));
  fc.assert(
    fc.property(fc.constantFrom('/', '/host', '/host/', 'rel/root', '/a/../b'), fc.array(segment, { maxLength: 5 }), (root, parts) => {
      const host = createHostAccess({ root, exec });
      const r = path.resolve(root);
      const joined = parts.map(String);
      const p = `/${joined.join('/')}`;
      return (
        host.procPath(...parts) === path.join(r, 'proc', ...joined) &&
        host.sysPath(...parts) === path.join(r, 'sys', ...joined) &&
        host.hostPath(p) === path.join(r, path.posix.resolve('/', p)) &&
        host.hostPath(joined.join('/')) === path.join(r, path.posix.resolve('/', joined.join('/')))
      );
    }),
    { numRuns: 3000 },
  );
  t.pass('3,000 random paths, each as path.join builds it');
  const h = createHostAccess({ root: '/host', exec });
  t.equal(h.hostPath('/var/lib/../../../etc/shadow'), '/host/etc/shadow', '`..` still stops at the host root');
  t.equal(h.procPath(42, 'fd'), '/host/proc/42/fd');
});
