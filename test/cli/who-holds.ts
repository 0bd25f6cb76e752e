// @live: uses the real machine through test/helpers/live.ts or runtime.ts, so it runs serially
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { renderWhoHolds } from '../../cli/who-holds.js';
import { painter } from '../../cli/format.js';
import { heldLoopFs, requireLive } from '../helpers/live.js';
import { runSync } from '../helpers/processes.js';
import { ensureTestImage, inspectField, removeContainer, requireRuntime, runContainer } from '../helpers/runtime.js';

t.test('process names, command lines, container names and mount lines are shown escaped', async (t) => {
  const evil = '\x1b]0;all good\x07\x1b[2J\u009b2J';
  const text = renderWhoHolds(
    {
      target: `/mnt/x${evil}`,
      kind: 'path',
      matchedBy: ['/mnt/x'],
      namespaces: [{ namespace: 'mnt:[4026532000]', host: false, processes: 1, mounts: [`1 2 7:0 / /mnt/x${evil} rw - ext4 /dev/loop0 rw`], holders: [{ pid: 42, comm: `sleep${evil}`, cmdline: `sleep 1000 ${evil}\nfake line`, containerId: 'abc', workload: { containerName: `c${evil}`, pod: `p${evil}`, namespace: 'default' } }] }],
    } as never,
    painter(false),
  );
  t.notMatch(text, /[\u0000-\u0009\u000b-\u001f\u007f-\u009f]/, 'no control character');
  t.match(text, /sleep\\x1b\]0;all good\\x07/, 'shown as text');
  t.notMatch(text, /^fake line/m);
});

t.test('live: who-holds as a process: a loop mount held in another mount namespace with unshare', async (t) => {
  if (!requireLive(t, { root: true, commands: ['unshare', 'mkfs.ext4', 'losetup'] })) return;
  const { fs, holder } = await heldLoopFs(t, 16);
  t.equal(spawnSync('umount', [fs.mountPoint]).status, 0, 'the host unmounts it');

  const r = runSync(['who-holds', fs.mountPoint]);
  t.equal(r.code, 0, 'exit 0: something holds it');
  t.equal(r.stderr, '');
  const lines = r.stdout.split('\n');
  t.match(lines[0], /^mnt:\[\d+\] \(1 process\)$/, 'the namespace, and how many processes are in it');
  t.match(lines[1], /^\s*PID\s+COMM\s+CONTAINER\s+POD\s+CMDLINE\s*$/);
  t.match(lines[2], new RegExp(`^\\s*${holder.pid}\\s+sleep\\s+-\\s+-\\s+sleep 600\\s*$`), 'the holder: no container, no pod');
  t.match(r.stdout, new RegExp(`^  \\S.* ${fs.mountPoint} rw,relatime - ext4 ${fs.device} `, 'm'), 'and its mount line');
  t.notMatch(r.stdout, /\(host/, 'the host no longer has it');

  const json = runSync(['who-holds', '--json', fs.device]);
  t.equal(json.code, 0);
  const parsed = JSON.parse(json.stdout) as { kind: string; namespaces: { host: boolean; holders: unknown[] }[] };
  t.equal(parsed.kind, 'device');
  t.same(parsed.namespaces.map((n) => [n.host, n.holders]), [[false, [{ pid: holder.pid, comm: 'sleep', cmdline: 'sleep 600' }]]], 'holders as before: pid, comm, cmdline (containerId only for containers)');

  await holder.stop();
  const none = runSync(['who-holds', fs.device]);
  t.equal(none.code, 1, 'exit 1 when nothing holds it, as grep');
  t.match(none.stdout, new RegExp(`^No mount namespace holds ${fs.device} \\(looked for 7:\\d+, ${fs.device}\\)\\.\\n$`));
});

t.test('who-holds usage errors: exit 3 and one line on stderr', async (t) => {
  for (const [args, msg] of [
    [['who-holds', '/dev/nw-no-such-device'], /^nodewarden: \/dev\/nw-no-such-device: no such device\n$/],
    [['who-holds', '/dev/null'], /^nodewarden: \/dev\/null: not a block device\n$/],
    [['who-holds', '/tmp', '--host-root', '/nonexistent-nw-root'], /^nodewarden: --host-root \/nonexistent-nw-root: no such directory\n$/],
    [['who-holds'], /who-holds/],
  ] as const) {
    const r = runSync([...args]);
    t.equal(r.code, 3, args.join(' '));
    t.equal(r.stdout, '');
    t.match(r.stderr, msg);
  }
});

t.test('live: who-holds CONTAINER names the container that holds its own storage', async (t) => {
  if (!requireRuntime(t)) return;
  ensureTestImage();
  runContainer('nw-who-holds', ['sleep', '600']);
  t.teardown(() => removeContainer('nw-who-holds'));
  const pid = Number(inspectField('nw-who-holds', '{{.State.Pid}}'));
  const id = inspectField('nw-who-holds', '{{.Id}}');
  const r = runSync(['who-holds', '--json', 'nw-who-holds']);
  t.equal(r.code, 0);
  const parsed = JSON.parse(r.stdout) as { kind: string; matchedBy: string[]; namespaces: { host: boolean; holders: { pid: number; containerId?: string; workload?: { containerName?: string } }[] }[] };
  t.equal(parsed.kind, 'container');
  t.ok(parsed.matchedBy.includes(id), 'looked for by its id and layers');
  const own = parsed.namespaces.find((n) => !n.host && n.holders.some((h) => h.pid === pid));
  t.ok(own, 'the container\'s own namespace holds its rootfs');
  const h = own?.holders.find((x) => x.pid === pid);
  t.same([h?.containerId, h?.workload?.containerName], [id, 'nw-who-holds'], 'its process, named by the runtime');
  const text = runSync(['who-holds', id.slice(0, 12)]);
  t.match(text.stdout, new RegExp(`^\\s*${pid}\\s+sleep\\s+nw-who-holds\\s+-\\s+sleep 600\\s*$`, 'm'), 'by short id too; the CONTAINER column names it');
});
