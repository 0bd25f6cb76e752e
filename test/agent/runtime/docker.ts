// DockerClient against hostile replies from a fake Engine API on a unix socket we start, and against the
// real dockerd on this machine.
// @live: uses the real machine through test/helpers/live.ts or runtime.ts, so it runs serially
import t from 'tap';
import http from 'node:http';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { DockerClient, DockerError } from '../../../agent/runtime/docker.js';
import { DOCKER_SOCK, requireRuntime } from '../../helpers/runtime.js';

async function fakeDocker(t: { teardown(fn: () => void): void }, handler: http.RequestListener): Promise<string> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'nw-fake-docker-'));
  const sock = path.join(dir, 'docker.sock');
  const server = http.createServer((req, res) => {
    if (req.url === '/_ping') {
      res.writeHead(200, { 'api-version': '1.41' }).end('OK');
      return;
    }
    handler(req, res);
  });
  await new Promise<void>((resolve) => server.listen(sock, resolve));
  t.teardown(() => {
    server.closeAllConnections();
    server.close();
    rmSync(dir, { recursive: true, force: true });
  });
  return sock;
}

t.test('speaks the daemon’s own API version when it is older than ours', async (t) => {
  const seen: string[] = [];
  const sock = await fakeDocker(t, (req, res) => {
    seen.push(req.url ?? '');
    res.writeHead(200, { 'content-type': 'application/json' }).end('[]');
  });
  t.same(await new DockerClient(sock, 2000).containers(), []);
  t.same(seen, ['/v1.41/containers/json?all=1']);
});

t.test('malformed JSON from the daemon is a coded parse error, not a crash', async (t) => {
  const sock = await fakeDocker(t, (_req, res) => res.writeHead(200, { 'content-type': 'application/json' }).end('[{"Id": "abc", '));
  await t.rejects(new DockerClient(sock, 2000).containers(), { code: 'NW_ERR_PARSE' });
});

t.test('a daemon that accepts but never answers: NW_ERR_TIMEOUT', async (t) => {
  const sock = await fakeDocker(t, () => {
    /* never answers */
  });
  await t.rejects(new DockerClient(sock, 300).images(), { code: 'NW_ERR_TIMEOUT' });
});

t.test('an error status carries the daemon’s message and status code', async (t) => {
  const sock = await fakeDocker(t, (_req, res) => res.writeHead(409, { 'content-type': 'application/json' }).end('{"message":"conflict: image is being used by running container 1234"}'));
  const err = await new DockerClient(sock, 2000).removeImage('sha256:x').catch((e: unknown) => e);
  t.ok(err instanceof DockerError);
  t.equal((err as DockerError).code, 'NW_ERR_RUNTIME');
  t.equal((err as DockerError).statusCode, 409);
  t.match((err as Error).message, /image is being used/);
});

t.test('a body past the cap is refused with a code, without buffering it all', async (t) => {
  const chunk = Buffer.alloc(1024 * 1024, 0x20);
  const sock = await fakeDocker(t, (_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.write('[');
    const pump = () => {
      while (!res.destroyed && res.write(chunk));
      if (!res.destroyed) res.once('drain', pump);
    };
    res.on('error', () => {});
    pump();
  });
  await t.rejects(new DockerClient(sock, 30_000).containers(), { code: 'NW_ERR_RUNTIME' });
});

t.test('no daemon at the socket: NW_ERR_RUNTIME', async (t) => {
  await t.rejects(new DockerClient('/nonexistent/docker.sock', 1000).ping(), { code: 'NW_ERR_RUNTIME' });
});

t.test('live: the real dockerd answers ping and lists its images', async (t) => {
  if (!requireRuntime(t)) return;
  const client = new DockerClient(DOCKER_SOCK, 5000);
  t.match(await client.ping(), /^1\.\d+$/);
  const images = await client.images();
  t.ok(images.some((i) => (i.RepoTags ?? []).includes('nodewarden-test/busybox:1')), 'the offline test image is listed');
  await t.rejects(client.inspect('nodewarden-no-such-container'), { code: 'NW_ERR_RUNTIME', statusCode: 404 });
});
