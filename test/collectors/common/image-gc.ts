import t from 'tap';
import { describeConsumer, evaluateImageGc, imageGcWants, withTopConsumers } from '../../../collectors/common/image-gc.js';
import type { Consumer, Fillers } from '../../../collectors/common/fillers.js';
import type { DiskRow } from '../../../collectors/disk.js';
import { createFillersAccess } from '../../../agent/actions/du.js';

const GiB = 1024 ** 3;
const gc = { high: 85, low: 80 };

/** A 100 GiB imagefs with `avail` GiB available. */
const fs = (availGiB: number, over: Partial<DiskRow> = {}): DiskRow => ({
  source: '/dev/sdb1', fsType: 'ext4', mountPoint: '/var/lib/docker', alsoAt: [], device: '8:17', readonly: false, kernelReadOnly: false, status: 'ok',
  size: 100 * GiB, used: (100 - availGiB) * GiB, avail: availGiB * GiB, usePercent: 100 - availGiB,
  ...over,
});

const c = (kind: Consumer['kind'], gib: number, over: Partial<Consumer> = {}): Consumer => ({ kind, bytes: Math.round(gib * GiB), path: `/var/lib/docker/x/${kind}/${gib}`, filesystem: '/var/lib/docker', ...over });

const fillers = (consumers: Consumer[], over: Partial<Fillers> = {}): Fillers => ({
  filesystems: [{ mountPoint: '/var/lib/docker', device: '8:17', fsType: 'ext4', source: '/dev/sdb1', roles: ['imagefs'], size: 100 * GiB, used: 90 * GiB, avail: 10 * GiB, usePercent: 90, attributed: 0, unattributed: 0, margin: 0 }],
  consumers,
  entries: 1000,
  errors: 0,
  notes: [],
  ...over,
});

const full = fillers([
  c('writable-layer', 3.1, { pod: 'shop/cart-7d9', container: 'app', image: 'cart:1' }),
  c('writable-layer', 2, { pod: 'shop/search-1', container: 'indexer' }),
  c('logs', 1.5, { pod: 'batch/report-x', container: 'main' }),
  c('emptydir', 1.2, { pod: 'ml/train-0', volume: 'scratch' }),
  c('image-in-use', 20, { image: 'cart:1' }),
  c('image-reclaimable', 0.7, { image: 'old:1' }),
  c('image-reclaimable', 0.5, { image: 'old:2' }),
]);

t.test("imageGcWants is kubelet's arithmetic: runs at or over the high threshold, frees down to the low one", async (t) => {
  t.equal(imageGcWants(fs(16), gc), undefined, '84% used: GC does not run');
  t.same(imageGcWants(fs(15), gc), { usagePercent: 85, bytesToFree: 5 * GiB }, '85%: it wants 20 - 15 GiB');
  t.same(imageGcWants(fs(10), gc), { usagePercent: 90, bytesToFree: 10 * GiB });
  // 100 - floor(avail*100/capacity): 15.5 GiB available is 85% used for kubelet (df would say 84.5)
  t.equal(imageGcWants(fs(15.5), gc)?.usagePercent, 85);
  t.equal(imageGcWants({ size: 0, avail: 0 }, gc), undefined, 'no capacity, no answer');
});

t.test('disk.imageGc: over the high threshold with less reclaimable than wanted names where the space is', async (t) => {
  const [o, ...rest] = evaluateImageGc({ imagefs: fs(10), runtimeRoot: '/var/lib/docker' }, full, gc);
  t.equal(rest.length, 0);
  t.ok(o);
  if (!o) return;
  t.equal(o.check, 'disk.imageGc');
  t.equal(o.subject, '/var/lib/docker');
  t.equal(o.severity, 'critical', '1.2 GiB of 10 GiB wanted is under a quarter');
  t.match(o.message, /it is 90% used \(image GC starts at 85%\) and GC wants 10(\.0)?G freed to get down to 80%/);
  t.match(o.message, /it can free at most 1\.2G \(2 unused images\)/);
  t.match(o.message, /The space is in: image in use cart:1 \(20(\.0)?G\), writable layer of shop\/cart-7d9\/app \(3\.1G\), writable layer of shop\/search-1\/indexer \(2(\.0)?G\), logs of batch\/report-x\/main \(1\.5G\), emptyDir scratch of ml\/train-0 \(1\.2G\)/);
  t.match(o.evidence, { bytesToFree: 10 * GiB, reclaimable: Math.round(0.7 * GiB) + Math.round(0.5 * GiB), usagePercent: 90, highThreshold: 85, lowThreshold: 80, unusedImages: ['old:1', 'old:2'] });
  t.match(o.remedy, /^nodewarden prune --dry-run/);
  t.match(o.remedy, /kubectl -n shop describe pod cart-7d9/);
  t.match(o.remedy, /nodewarden du --json/);
});

t.test('warning when the unused images free at least a quarter of what GC wants', async (t) => {
  const f = fillers([...full.consumers, c('image-reclaimable', 2, { image: 'old:3' })]);
  const [o] = evaluateImageGc({ imagefs: fs(10) }, f, gc);
  t.equal(o?.severity, 'warning');
  t.match(o?.message, /3 unused images/);
});

t.test('silent when GC can free enough, when it does not run, without a measurement or with a partial one', async (t) => {
  const plenty = fillers([...full.consumers, c('image-reclaimable', 9, { image: 'big:1' })]);
  t.same(evaluateImageGc({ imagefs: fs(10) }, plenty, gc), [], 'reclaimable covers what is wanted');
  t.same(evaluateImageGc({ imagefs: fs(20) }, full, gc), [], 'under the high threshold (the live statfs says so: it clears)');
  t.same(evaluateImageGc({ imagefs: fs(10) }, undefined, gc), [], 'no measurement');
  t.same(evaluateImageGc({ imagefs: fs(10) }, fillers(full.consumers, { partial: { reason: 'deadline', detail: 'x' } }), gc), [], 'a partial walk undercounts: not used');
  t.same(evaluateImageGc({}, full, gc), [], 'no imagefs (no kubelet)');
  t.same(evaluateImageGc({ imagefs: fs(10, { mountPoint: '/other' }) }, full, gc), [], 'a measurement of another filesystem');
});

t.test('disk.usage and disk.eviction name the three largest consumers of a measured filesystem', async (t) => {
  const base = { severity: 'warning' as const, message: 'Filesystem /var/lib/docker is 90% full.', evidence: { mountPoint: '/var/lib/docker' }, remedy: 'du -xh' };
  const [u, e, other, inodes] = withTopConsumers(
    [
      { ...base, check: 'disk.usage', subject: '/var/lib/docker' },
      { ...base, check: 'disk.eviction', subject: '/var/lib/docker' },
      { ...base, check: 'disk.usage', subject: '/data' },
      { ...base, check: 'disk.inodes', subject: '/var/lib/docker' },
    ],
    full,
  );
  t.equal(u?.message, 'Filesystem /var/lib/docker is 90% full. Largest: image in use cart:1 (20G), writable layer of shop/cart-7d9/app (3.1G), writable layer of shop/search-1/indexer (2.0G).');
  t.match(u?.evidence, { mountPoint: '/var/lib/docker', topConsumers: [{ kind: 'image-in-use' }, { kind: 'writable-layer', pod: 'shop/cart-7d9', container: 'app' }, { kind: 'writable-layer' }] });
  t.match(e?.message, /Largest: image in use cart:1/);
  t.equal(other?.message, base.message, 'a filesystem not measured is unchanged');
  t.equal(inodes?.message, base.message, 'inodes are not about bytes');
  t.equal(withTopConsumers([{ ...base, check: 'disk.usage', subject: '/var/lib/docker' }], undefined)[0]?.message, base.message, 'no measurement: unchanged');
});

t.test('describeConsumer', async (t) => {
  t.equal(describeConsumer(c('other', 2, { path: '/var/tmp' })), 'other files in /var/tmp (2.0G)');
  t.equal(describeConsumer(c('other', 2, { rest: 40 })), '40 other paths on /var/lib/docker (2.0G)');
  t.equal(describeConsumer(c('logs', 1, { container: 'nginx' })), 'logs of nginx (1.0G)', 'a container outside Kubernetes');
});

t.test('the background measurement: one at a time, paced, the caller never waits on it', async (t) => {
  let clock = 1_000_000;
  let calls = 0;
  let release: (() => void) | undefined;
  const measure = () => {
    calls++;
    return new Promise<Fillers>((resolve) => {
      release = () => resolve(full);
    });
  };
  const access = createFillersAccess(measure, { now: () => clock });
  t.equal(await access.get(300_000), undefined, 'nothing yet: the first call starts it and returns at once');
  t.equal(calls, 1);
  t.equal(await access.get(300_000), undefined, 'still running: not started twice');
  t.equal(calls, 1);
  release!();
  await access.idle();
  t.equal((await access.get(300_000))?.fillers, full, 'the finished measurement');
  clock += 60_000;
  await access.get(300_000);
  t.equal(calls, 1, 'paced: no new one within everyMs');
  clock += 300_000;
  t.equal((await access.get(300_000))?.fillers, full, 'past everyMs: the last one is still used while a new one runs');
  t.equal(calls, 2);
  release!();
  await access.idle();
  clock += 2_000_000;
  const failing = createFillersAccess(() => Promise.reject(new Error('boom')), { now: () => clock });
  t.equal(await failing.get(1000), undefined);
  await failing.idle();
  t.equal(await failing.get(1000), undefined, 'a failed measurement leaves none and does not throw');
  t.equal(await access.get(300_000), undefined, 'too old (3 x everyMs): not used');
});
