import t from 'tap';
import { COLLECTORS } from '../../collectors/index.js';
import { KNOWN_CHECKS } from '../../protocol/checks.js';

t.test('the known check names are the registry: every collector check, the agent and aggregator ones, nothing else', async (t) => {
  const registry = new Set([...COLLECTORS.flatMap((c) => c.checks), 'collector.failed', 'collector.timeout', 'node.silent']);
  t.same([...KNOWN_CHECKS].sort(), [...registry].sort());
});
