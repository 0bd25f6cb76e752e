// The Dockerfile, built on this machine's dockerd. Docker Hub cannot be reached here, so the node:20-slim
// base is a stand-in made offline (scripts/make-node-standin.sh: Debian's packages and this machine's
// Node), passed as NODE_IMAGE. The image then runs `check` against this machine's root at /host.
// @timeout 840: on a fresh machine the stand-in base (debootstrap, g++) is made first, 5-7 minutes here; .ci/run makes it before the tests
// @live shared: builds and runs its own image (no prune label, so web's prune leaves it alone) and asserts only the root filesystem's row and that sockets have holders, not the whole node: it may run beside another shared file
import t from 'tap';
import { execFileSync, spawnSync } from 'node:child_process';
import { DOCKER, dockerTry, requireRuntime } from './helpers/runtime.js';
import { requireLive } from './helpers/live.js';

const BASE = 'nodewarden-test/node:20-slim';
const IMAGE = 'nodewarden-test/nodewarden:dev';
t.setTimeout(15 * 60_000);

t.test('live: the image builds from the Dockerfile and checks this host from /host', async (t) => {
  if (!requireRuntime(t) || !requireLive(t, { commands: ['debootstrap'] })) return;
  execFileSync('bash', ['scripts/make-node-standin.sh', BASE], { stdio: ['ignore', 'ignore', 'inherit'], timeout: 10 * 60_000 });
  const args = ['build', '--network', 'host', '--build-arg', `NODE_IMAGE=${BASE}`, '-t', IMAGE, '.'];
  // The stand-in carries this machine's CA bundle; npm needs it where a TLS proxy stands before the registry.
  if (process.env['NODE_EXTRA_CA_CERTS']) args.splice(1, 0, '--build-arg', 'NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt');
  const build = spawnSync(DOCKER, args, { encoding: 'utf8', timeout: 10 * 60_000, maxBuffer: 64 * 1024 * 1024 });
  t.equal(build.status, 0, `docker build: ${build.stdout.split('\n').slice(-8).join('\n')}${build.stderr.slice(-2000)}`);
  if (build.status !== 0) return;
  t.teardown(() => dockerTry('rmi', '-f', IMAGE));

  const config = JSON.parse(execFileSync(DOCKER, ['image', 'inspect', '-f', '{{json .Config}}', IMAGE], { encoding: 'utf8' })) as { Entrypoint: string[]; Cmd: string[] };
  t.same(config.Entrypoint, ['node', '/app/dist/cli/main.js']);
  t.same(config.Cmd, ['agent'], 'runs the agent by default');
  const ls = dockerTry('run', '--rm', '--network', 'none', '--entrypoint', 'sh', IMAGE, '-c', 'ls /app/node_modules/tap /app/node_modules/typescript 2>&1; ls /app/node_modules/pino/package.json; ls /app/build/Release');
  t.match(ls.stdout, /No such file[\s\S]*No such file/, 'no dev dependencies (tap, typescript)');
  t.match(ls.stdout, /pino\/package.json/, 'production dependencies are there');
  t.match(ls.stdout, /nodewarden_attrs.node/, 'with the native module');
  t.equal(dockerTry('run', '--rm', '--network', 'none', IMAGE, '--version').stdout, '0.1.0', 'the same image runs the CLI');
  t.match(dockerTry('run', '--rm', '--network', 'none', IMAGE, 'aggregator', '--help').stdout, /nodewarden aggregator --tokens-dir/, 'and the aggregator');

  // As the DaemonSet runs it: the host root read-only at /host, SYS_PTRACE and DAC_READ_SEARCH.
  const run = spawnSync(DOCKER, ['run', '--rm', '--network', 'none', '--cap-drop', 'ALL', '--cap-add', 'SYS_PTRACE', '--cap-add', 'DAC_READ_SEARCH', '-v', '/:/host:ro', IMAGE, 'check', '--host-root', '/host', '--json', '--only', 'disk,sockets'], { encoding: 'utf8', timeout: 120_000 });
  t.ok(run.status !== null && run.status <= 2, `check ran (exit ${run.status}) ${run.stderr}`);
  const report = JSON.parse(run.stdout) as { data: { disk: { rows: { mountPoint: string; fsType: string; status: string }[] }; sockets: { holders: number; top: { comm: string }[] } } };
  const rootType = execFileSync('findmnt', ['-n', '-o', 'FSTYPE', '/'], { encoding: 'utf8' }).trim();
  t.same(report.data.disk.rows.find((r) => r.mountPoint === '/') && { fsType: report.data.disk.rows.find((r) => r.mountPoint === '/')!.fsType, status: 'ok' }, { fsType: rootType, status: 'ok' }, "this machine's root filesystem, seen through /host");
  t.ok(report.data.sockets.holders > 0, `${report.data.sockets.holders} socket holders on this machine`);
  t.ok(report.data.sockets.top.some((h) => h.comm === 'dockerd' || h.comm === 'containerd'), "this machine's runtime daemons among them");
});
