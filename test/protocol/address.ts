import t from 'tap';
import { loadConfig } from '../../agent/config.js';
import { parseHostPort } from '../../protocol/address.js';
import type { NodewardenError } from '../../protocol/errors.js';
import { runSync } from '../helpers/processes.js';

t.test('HOST:PORT: names, IPv4, bracketed IPv6 and an empty host for every interface', async (t) => {
  t.same(parseHostPort('127.0.0.1:9742'), { host: '127.0.0.1', port: 9742 });
  t.same(parseHostPort('agg.example:443'), { host: 'agg.example', port: 443 });
  t.same(parseHostPort('[::1]:0'), { host: '::1', port: 0 });
  t.same(parseHostPort('[::ffff:10.0.0.1]:65535'), { host: '::ffff:10.0.0.1', port: 65535 });
  t.same(parseHostPort(':9743'), { host: '0.0.0.0', port: 9743 }, 'no host: every interface');
});

t.test('HOST:PORT: what is not one is refused, ports above 65535 included', async (t) => {
  for (const bad of ['127.0.0.1:65536', '127.0.0.1:99999', '127.0.0.1', '9742', '::1:80', 'a b:80', '127.0.0.1:', '127.0.0.1:-1', '127.0.0.1:80x', '[::1:80', '']) {
    t.equal(parseHostPort(bad), undefined, JSON.stringify(bad));
  }
});

t.test('the agent config and the aggregator flag refuse the same bad address', async (t) => {
  const err = t.throws(() => loadConfig({ sets: ['agent.listen=127.0.0.1:99999'] })) as NodewardenError;
  t.equal(err.code, 'NW_ERR_CONFIG');
  t.match(err.details.join('\n'), /agent\.listen/);
  t.equal(loadConfig({ sets: ["agent.listen=''"] }).agent.listen, '', "'' still turns the listener off");
  const r = runSync(['aggregator', '--listen', '127.0.0.1:99999', '--tokens-dir', '/nonexistent']);
  t.equal(r.code, 3);
  t.equal(r.stderr, 'nodewarden: --listen must be HOST:PORT, got 127.0.0.1:99999\n');
});
