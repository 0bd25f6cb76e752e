import t from 'tap';
import fc from 'fast-check';
import { ListItemSplitter } from '../../../agent/kube/list-items.js';

/** Feeds `text` in pieces cut at `cuts`; returns the items parsed and the rest parsed. */
function split(text: string, cuts: number[], max?: number) {
  const items: unknown[] = [];
  const s = new ListItemSplitter((item) => items.push(JSON.parse(item)), max);
  let from = 0;
  for (const cut of [...cuts.filter((c) => c > 0 && c < text.length)].sort((a, b) => a - b)) {
    s.write(text.slice(from, cut));
    from = cut;
  }
  s.write(text.slice(from));
  return { items, rest: JSON.parse(s.rest()) as unknown, count: s.items };
}

t.test('a list arrives as its items one by one and the rest, wherever the chunks are cut', async (t) => {
  const list = { kind: 'PodList', apiVersion: 'v1', metadata: { resourceVersion: '42', continue: 'eyJvZmZzZXQiOjJ9' }, items: [{ metadata: { name: 'a', annotations: { 'x"}]{[': 'a \\"quoted\\" ]}' } } }, { metadata: { name: 'b' }, spec: { containers: [{ name: 'c', args: ['[', '{'] }] } }] };
  const text = JSON.stringify(list, null, 1);
  for (let cut = 0; cut <= text.length; cut += 7) {
    const { items, rest } = split(text, [cut, cut + 3]);
    t.same(items, list.items, `cut at ${cut}`);
    t.same(rest, { ...list, items: [] });
  }
});

t.test('fuzz: any JSON list gives back exactly its object items and its metadata, in any chunking', async (t) => {
  fc.assert(
    fc.property(
      fc.record({ metadata: fc.dictionary(fc.string(), fc.jsonValue()), items: fc.array(fc.dictionary(fc.string(), fc.jsonValue()), { maxLength: 8 }), kind: fc.string() }),
      fc.array(fc.nat({ max: 4000 }), { maxLength: 12 }),
      (list, cuts) => {
        const { items, rest } = split(JSON.stringify(list), cuts);
        t.same(items, list.items);
        t.same(rest, { ...list, items: [] });
        return true;
      },
    ),
    { numRuns: 300 },
  );
});

t.test('an item longer than the limit is refused, not held', async (t) => {
  const text = JSON.stringify({ metadata: {}, items: [{ big: 'x'.repeat(5000) }] });
  t.throws(() => split(text, [100, 200, 3000], 1000), RangeError);
  t.equal(split(text, [100], 10_000).count, 1);
});

t.test('KubeClient.list: items as they come, the rest at the end; a list cut short is NW_ERR_PARSE, not a short list', async (t) => {
  const http = await import('node:http');
  const { KubeClient } = await import('../../../agent/kube/client.js');
  const body = JSON.stringify({ kind: 'PodList', metadata: { resourceVersion: '9' }, items: [{ metadata: { name: 'a' } }, { metadata: { name: 'b' } }] });
  const server = http.createServer((req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    if (req.url?.includes('cut')) res.end(body.slice(0, body.indexOf('"b"')));
    else {
      // Sent in pieces, as a big page arrives.
      for (let i = 0; i < body.length; i += 5) res.write(body.slice(i, i + 5));
      res.end();
    }
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => server.close());
  const client = new KubeClient({ server: `http://127.0.0.1:${(server.address() as { port: number }).port}`, token: 't', timeoutMs: 2000 });
  const names: unknown[] = [];
  const rest = await client.list('/api/v1/pods', (item) => names.push((item['metadata'] as { name: string }).name));
  t.same(names, ['a', 'b']);
  t.same(rest, { kind: 'PodList', metadata: { resourceVersion: '9' }, items: [] });
  await t.rejects(client.list('/api/v1/pods?cut=1', () => {}), { code: 'NW_ERR_PARSE' });
});
