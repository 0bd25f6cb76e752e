import t from 'tap';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { collectHostFacts } from '../../../agent/host/facts.js';
import { createHostAccess } from '../../../agent/host/access.js';
import { exec } from '../../../agent/host/exec.js';
import type { HostAccess } from '../../../collectors/types.js';

/** A host root with its own identity, so a value read from this machine instead would show. */
function capturedRoot(): string {
  const root = mkdtempSync(path.join(os.tmpdir(), 'nw-facts-'));
  mkdirSync(path.join(root, 'etc'));
  mkdirSync(path.join(root, 'proc', 'sys', 'kernel'), { recursive: true });
  writeFileSync(path.join(root, 'etc', 'os-release'), 'NAME="Test"\nPRETTY_NAME="Test Linux 7 (nodewarden)"\nID=test\n');
  writeFileSync(path.join(root, 'proc', 'sys', 'kernel', 'hostname'), 'captured-node\n');
  writeFileSync(path.join(root, 'proc', 'sys', 'kernel', 'osrelease'), '9.9.9-captured\n');
  return root;
}

t.test('OS, hostname and kernel come from the host root; memory, load and cpus from the machine', async (t) => {
  const root = capturedRoot();
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  const facts = await collectHostFacts(createHostAccess({ root, exec }), 30_000);
  t.ok(facts, 'facts within the deadline');
  if (!facts) return;
  t.equal(facts.os, 'Test Linux 7 (nodewarden)', 'PRETTY_NAME, unquoted');
  t.equal(facts.hostname, 'captured-node');
  t.equal(facts.kernel, '9.9.9-captured');
  const memTotalKiB = Number(/^MemTotal:\s+(\d+)/m.exec(readFileSync('/proc/meminfo', 'utf8'))?.[1]);
  t.equal(facts.memTotal, memTotalKiB * 1024, 'MemTotal of /proc/meminfo, in bytes');
  t.ok(facts.memAvailable > 0 && facts.memAvailable <= facts.memTotal);
  t.equal(facts.cpus, os.cpus().length);
  t.equal(facts.load.length, 3);
  t.ok(facts.uptimeSeconds > 0);
});

t.test('a root without those files falls back to this machine, and an unknown OS says so', async (t) => {
  const root = mkdtempSync(path.join(os.tmpdir(), 'nw-facts-empty-'));
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  const facts = await collectHostFacts(createHostAccess({ root, exec }), 30_000);
  t.equal(facts?.hostname, os.hostname());
  t.equal(facts?.kernel, os.release());
  t.equal(facts?.os, 'unknown OS');
});

t.test('a host read that never returns gives no facts at the deadline instead of holding check up', async (t) => {
  const real = createHostAccess({ root: '/', exec });
  const stuck: HostAccess = { ...real, readText: () => new Promise(() => undefined) };
  t.equal(await collectHostFacts(stuck, 200), undefined);
});

t.test('a host read that fails gives no facts, not an exception', async (t) => {
  const real = createHostAccess({ root: '/', exec });
  const failing: HostAccess = { ...real, readText: () => Promise.reject(Object.assign(new Error('EIO'), { code: 'EIO' })) };
  t.equal(await collectHostFacts(failing, 30_000), undefined);
});
