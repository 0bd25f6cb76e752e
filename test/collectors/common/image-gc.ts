import t from 'tap';
import fc from 'fast-check';
import { readFileSync } from 'node:fs';
import { describeConsumer, describeKubeletReport, evaluateImageGc, imageGcWants, parseKubeletGcMessage, recentKubeletGcFailures, withTopConsumers } from '../../../collectors/common/image-gc.js';
import type { KubeletGcEvent } from '../../../collectors/types.js';
import { toKubeletGcEvent } from '../../../agent/kube/node.js';
import type { Consumer, Fillers } from '../../../collectors/common/fillers.js';
import type { DiskRow } from '../../../collectors/disk.js';
import { createFillersAccess, WALK_CPU_SHARE } from '../../../agent/actions/du.js';

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

/** A measurement that finishes when the test says (`release`), after `onRelease` (the walk's cost). */
function heldMeasure(onRelease = () => {}) {
  const m = { calls: 0, release: () => {}, measure: () => new Promise<Fillers>(() => {}) };
  m.measure = () => {
    m.calls++;
    return new Promise<Fillers>((resolve) => {
      m.release = () => {
        onRelease();
        resolve(full);
      };
    });
  };
  return m;
}

t.test('the background measurement: one at a time, paced, the caller never waits on it', async (t) => {
  let clock = 1_000_000;
  const held = heldMeasure();
  const release = () => held.release();
  const access = createFillersAccess(held.measure, { now: () => clock });
  t.equal(await access.get(300_000), undefined, 'nothing yet: the first call starts it and returns at once');
  t.equal(held.calls, 1);
  t.equal(await access.get(300_000), undefined, 'still running: not started twice');
  t.equal(held.calls, 1);
  release();
  await access.idle();
  t.equal((await access.get(300_000))?.fillers, full, 'the finished measurement');
  clock += 60_000;
  await access.get(300_000);
  t.equal(held.calls, 1, 'paced: no new one within everyMs');
  clock += 300_000;
  t.equal((await access.get(300_000))?.fillers, full, 'past everyMs: the last one is still used while a new one runs');
  t.equal(held.calls, 2);
  release();
  await access.idle();
  clock += 2_000_000;
  const failing = createFillersAccess(() => Promise.reject(new Error('boom')), { now: () => clock });
  t.equal(await failing.get(1000), undefined);
  await failing.idle();
  t.equal(await failing.get(1000), undefined, 'a failed measurement leaves none and does not throw');
  t.equal(await access.get(300_000), undefined, 'too old (3 x everyMs): not used');
});

t.test('the background measurement is paced to its CPU: a walk of 3.7 s of CPU waits 31 minutes for the next, not everyMs; its result is used that long', async (t) => {
  let clock = 1_000_000;
  let cpu = 0;
  const held = heldMeasure(() => {
    cpu += 3_700; // the walk's threads
    clock += 20_000;
  });
  const access = createFillersAccess(held.measure, { now: () => clock, cpuMs: () => cpu });
  await access.get(300_000);
  held.release();
  await access.idle();
  const gap = 3_700 / WALK_CPU_SHARE;
  t.equal(gap, 1_850_000, '3.7 s of CPU at 2 millicores: 1,850 s');
  clock += 300_000;
  t.equal((await access.get(300_000))?.fillers, full, 'past everyMs: the last one is used');
  t.equal(held.calls, 1, 'but no new walk: its CPU asks for 1,850 s');
  clock += gap - 300_000 - 1;
  await access.get(300_000);
  t.equal(held.calls, 1, 'not a millisecond before');
  clock += 1;
  t.equal((await access.get(300_000))?.fillers, full, 'then a new walk, the last one still used (3 gaps: 92 minutes)');
  t.equal(held.calls, 2);
  held.release();
  await access.idle();
  let cheapCalls = 0;
  const cheap = createFillersAccess(() => {
    cheapCalls++;
    cpu += 100;
    return Promise.resolve(full);
  }, { now: () => clock, cpuMs: () => cpu });
  await cheap.get(300_000);
  await cheap.idle();
  clock += 300_000;
  await cheap.get(300_000);
  t.equal(cheapCalls, 2, 'a walk of 100 ms of CPU (a gap of 50 s) leaves everyMs the pace');
});

// kubelet's own Events, as the API server holds them (test/fixtures/k8s/events): one per message form.
const NODE = 'ip-10-0-3-17.eu-west-1.compute.internal';
const event = (file: string): KubeletGcEvent => {
  const e = toKubeletGcEvent(JSON.parse(readFileSync(`test/fixtures/k8s/events/${file}`, 'utf8')) as unknown, NODE);
  if (!e) throw new Error(`${file}: not a kubelet GC event`);
  return e;
};
const at = (iso: string) => Date.parse(iso);

t.test("parseKubeletGcMessage: every form of kubelet's message, with its numbers; other ImageGCFailed messages are not about space", async (t) => {
  t.same(parseKubeletGcMessage(event('image-gc-failed-1.27.json').message), { wanted: 6089891840, freed: 0 }, 'up to 1.28, behind the correlator\'s "(combined from similar events)"');
  t.same(parseKubeletGcMessage(event('free-disk-space-failed-1.30.json').message), { wanted: 4783028633, freed: 776830292 }, '1.29 to 1.33: "eligible to free"');
  t.same(parseKubeletGcMessage(event('free-disk-space-failed-1.34.json').message), { usagePercent: 88, capacity: '26.4 GiB', freed: 385820817 }, '1.34: the usage, no wanted');
  const errors = parseKubeletGcMessage(event('image-gc-failed-deletion-errors.json').message);
  t.match(errors, { wanted: 1258866278, freed: 0, deletionErrors: /unable to delete a8493f5f50ff \(must be forced\) - image is being used by stopped container/ }, 'the runtime refused a removal');
  t.same(parseKubeletGcMessage("Insufficient free disk space on the node's image filesystem (95.0% of 10.0 GiB used). Failed to free sufficient space by deleting unused images. Consider resizing the disk or deleting unused files."), { usagePercent: 95, capacity: '10.0 GiB' }, "1.34's release-note form, without what was freed");
  t.same(parseKubeletGcMessage('wanted to free 6607811379, but freed 7438123270 space with errors in image deletion: [conflict]'), { wanted: 6607811379, freed: 7438123270, deletionErrors: '[conflict]' }, 'the oldest form, without "bytes"');
  t.equal(parseKubeletGcMessage(event('image-gc-failed-imagefs-info.json').message), undefined, "kubelet's start: nothing about space");
  t.equal(parseKubeletGcMessage('Wanted to free 99999999999999999999 bytes, but freed 0 bytes'), undefined, 'not a safe integer: not trusted');
  t.equal(parseKubeletGcMessage("Insufficient free disk space on the node's image filesystem (250% of 1 GiB used). Failed to free sufficient space by deleting unused images"), undefined, 'over 100 %');
  t.equal(parseKubeletGcMessage(''), undefined);
});

t.test('fuzz: parseKubeletGcMessage never throws and returns only safe byte counts and bounded text', async (t) => {
  const forms = fc.oneof(
    fc.tuple(fc.bigInt({ min: 0n, max: 10n ** 21n }), fc.bigInt({ min: 0n, max: 10n ** 21n }), fc.string({ maxLength: 2000 })).map(([a, b, e]) => `wanted to free ${a} bytes, but freed ${b} bytes space with errors in image deletion: ${e}`),
    fc.tuple(fc.nat(), fc.nat()).map(([a, b]) => `Failed to garbage collect required amount of images. Attempted to free ${a} bytes, but only found ${b} bytes eligible to free.`),
    fc.tuple(fc.double({ min: 0, max: 1000, noNaN: true }), fc.string({ maxLength: 60 }), fc.option(fc.nat())).map(([p, c, f]) => `Insufficient free disk space on the node's image filesystem (${p}% of ${c} used). Failed to free sufficient space by deleting unused images${f === null ? '' : ` (freed ${f} bytes)`}.`),
    fc.string({ maxLength: 3000 }),
    fc.fullUnicodeString({ maxLength: 500 }).map((x) => `(combined from similar events): Wanted to free ${x}`),
  );
  fc.assert(fc.property(forms, (m) => {
    const r = parseKubeletGcMessage(m);
    if (r === undefined) return true;
    const byteCount = (n: number | undefined) => n === undefined || (Number.isSafeInteger(n) && n >= 0);
    return byteCount(r.wanted) && byteCount(r.freed) && (r.wanted !== undefined || r.usagePercent !== undefined) && (r.usagePercent === undefined || (r.usagePercent >= 0 && r.usagePercent <= 100)) && (r.capacity ?? '').length <= 32 && (r.deletionErrors ?? '').length <= 300;
  }), { numRuns: 3000 });
  t.pass('3,000 messages');
});

t.test('recentKubeletGcFailures: the latest report within the lookback, how often since when; older ones and other messages do not count', async (t) => {
  const now = at('2026-11-22T10:05:00Z');
  const pair = [event('image-gc-failed-1.27.json'), event('free-disk-space-failed-1.30.json')];
  const r = recentKubeletGcFailures([...pair, event('image-gc-failed-imagefs-info.json')], now, 15 * 60_000);
  t.equal(r?.times, 14, 'kubelet records both reasons for one failed run: counted once');
  t.equal(r?.since, at('2026-11-22T09:18:02Z'));
  t.equal(r?.latest.lastSeen, at('2026-11-22T10:03:05Z'));
  t.equal(describeKubeletReport(r!, now), 'kubelet (ImageGCFailed): wanted to free 5.7G, freed 0 at 10:03 UTC (14 times since 09:18 UTC)', 'of two at the same time, the first read');
  t.equal(recentKubeletGcFailures(pair, at('2026-11-22T10:18:06Z'), 15 * 60_000), undefined, 'last reported 15 min and 1 s ago: GC has not failed since');
  t.equal(recentKubeletGcFailures([event('image-gc-failed-imagefs-info.json')], at('2026-11-22T08:02:00Z'), 15 * 60_000), undefined, 'recent, but not about space');
  t.equal(recentKubeletGcFailures(pair, at('2026-11-22T10:00:00Z'), 15 * 60_000)?.times, 14, "3 min in the agent's future (a skewed clock): believed");
  t.equal(recentKubeletGcFailures(pair, at('2026-11-22T09:30:00Z'), 15 * 60_000), undefined, '33 min in the future: not believed');
  const later = recentKubeletGcFailures([...pair, event('free-disk-space-failed-1.34.json'), event('image-gc-failed-deletion-errors.json')], at('2026-11-22T10:05:00Z'), 15 * 60_000);
  t.equal(later?.times, 19, '14 FreeDiskSpaceFailed of 1.30 plus 5 of 1.34 (the ImageGCFailed ones add up to 15)');
  t.match(describeKubeletReport(recentKubeletGcFailures([event('free-disk-space-failed-1.34.json')], at('2026-11-23T10:05:00Z'), 2 * 86_400_000)!, at('2026-11-23T10:05:00Z')), /^kubelet \(FreeDiskSpaceFailed\): image filesystem 88% of 26\.4 GiB used, unused images freed 368M at Nov 22 10:00 UTC \(5 times since Nov 22 09:40 UTC\)$/, 'another day: the date too');
  t.match(describeKubeletReport(recentKubeletGcFailures([event('image-gc-failed-deletion-errors.json')], at('2026-11-22T10:00:00Z'), 15 * 60_000)!, at('2026-11-22T10:00:00Z')), /freed 0 at 09:55 UTC; the runtime refused to delete images: rpc error/, 'once: no count; the runtime\'s refusal quoted');
});

t.test("disk.imageGc from kubelet's report: fires without the local condition, cites kubelet beside where the space is; both together are one finding", async (t) => {
  const now = at('2026-11-22T10:05:00Z');
  const report = recentKubeletGcFailures([event('image-gc-failed-1.27.json')], now, 15 * 60_000)!;
  const calm = fs(40);
  t.same(evaluateImageGc({ imagefs: calm }, full, gc, undefined, now), [], 'locally 60% used and no report: nothing');
  const [o, ...rest] = evaluateImageGc({ imagefs: calm, runtimeRoot: '/var/lib/docker', node: NODE }, full, gc, report, now);
  t.equal(rest.length, 0);
  t.equal(o?.subject, '/var/lib/docker');
  t.equal(o?.severity, 'critical', 'kubelet freed 0 of 5.7G');
  t.equal(o?.message, "kubelet's image GC cannot free enough on /var/lib/docker: kubelet (ImageGCFailed): wanted to free 5.7G, freed 0 at 10:03 UTC (14 times since 09:18 UTC). The unused images here would free 1.2G (2 unused images). The space is in: image in use cart:1 (20G), writable layer of shop/cart-7d9/app (3.1G), writable layer of shop/search-1/indexer (2.0G), logs of batch/report-x/main (1.5G), emptyDir scratch of ml/train-0 (1.2G).");
  t.match(o?.evidence, { bytesToFree: 6089891840, reclaimable: Math.round(1.2 * GiB), kubelet: { reason: 'ImageGCFailed', wanted: 6089891840, freed: 0, times: 14, lastSeen: '2026-11-22T10:03:05.000Z' } });
  t.match(o?.remedy, `kubectl describe node ${NODE}  # kubelet's events`);

  const [waiting] = evaluateImageGc({ imagefs: calm }, undefined, gc, report, now);
  t.match(waiting?.message, /wanted to free 5\.7G, freed 0 at 10:03 UTC \(14 times since 09:18 UTC\)\. Where the space is: being measured now/, 'no measurement yet: kubelet\'s words, and the measurement is on its way');
  t.same(waiting?.evidence['topConsumers'], []);
  const [partial] = evaluateImageGc({ imagefs: calm }, fillers(full.consumers, { partial: { reason: 'deadline', detail: 'x' } }), gc, report, now);
  t.match(partial?.message, /being measured now/, 'a partial measurement is not used to explain either');

  const [both, ...none] = evaluateImageGc({ imagefs: fs(10) }, full, gc, report, now);
  t.equal(none.length, 0, 'one finding');
  t.match(both?.message, /it is 90% used \(image GC starts at 85%\) and GC wants 10(\.0)?G freed to get down to 80%, but it can free at most 1\.2G \(2 unused images\)\. kubelet \(ImageGCFailed\): wanted to free 5\.7G, freed 0 at 10:03 UTC/);
  t.equal(both?.evidence['bytesToFree'], 10 * GiB, 'the live numbers first');

  const v134 = recentKubeletGcFailures([event('free-disk-space-failed-1.34.json')], now, 15 * 60_000)!;
  const [o134] = evaluateImageGc({ imagefs: calm }, full, gc, v134, now);
  t.equal(o134?.severity, 'warning', 'no wanted in the 1.34 message and the local condition does not hold: a warning');
  t.match(o134?.message, /kubelet \(FreeDiskSpaceFailed\): image filesystem 88% of 26\.4 GiB used, unused images freed 368M at 10:00 UTC \(5 times since 09:40 UTC\)/);
  const [noFs] = evaluateImageGc({}, undefined, gc, report, now);
  t.equal(noFs?.subject, 'imagefs', 'kubelet reports it where the agent found no imagefs: still said');
});

t.test('the refresh between walks: the largest consumers only, one at a time, only when asked', async (t) => {
  let clock = 1_000_000;
  const asked: string[][] = [];
  let release: (() => void) | undefined;
  const refresh = (roots: readonly string[]) => {
    asked.push([...roots]);
    return new Promise<{ bytes: Record<string, number> }>((resolve) => {
      release = () => resolve({ bytes: Object.fromEntries(roots.map((r) => [r, 42])) });
    });
  };
  const access = createFillersAccess(async () => full, { now: () => clock, refresh });
  await access.get(300_000, { refresh: true });
  await access.idle();
  t.same(asked, [], 'no refresh before a measurement');
  await access.get(300_000);
  t.same(asked, [], 'not asked for: none');
  clock += 30_000;
  t.equal((await access.get(300_000, { refresh: true }))?.refreshed, undefined, 'started; the caller does not wait');
  t.same(asked[0], full.consumers.filter((c) => !c.kind.startsWith('image-')).slice(0, 5).map((c) => c.path), 'the five largest that are not images');
  await access.get(300_000, { refresh: true });
  t.equal(asked.length, 1, 'one at a time');
  clock += 1000;
  release!();
  await access.idle();
  const got = await access.get(300_000, { refresh: true });
  t.same(got?.refreshed, { takenAt: 1_031_000, bytes: Object.fromEntries(asked[0]!.map((p) => [p, 42])) }, 'the next call returns it, with when');
  release!();
  await access.idle();
});
