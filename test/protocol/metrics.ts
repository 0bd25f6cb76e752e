import t from 'tap';
import { renderMetrics } from '../../protocol/metrics.js';

t.test('renders HELP, TYPE and one line per sample, as Prometheus reads them', async (t) => {
  const text = renderMetrics([
    { name: 'nodewarden_findings', help: 'open findings', type: 'gauge', samples: [{ labels: { check: 'disk.usage', severity: 'warning' }, value: 2 }] },
    { name: 'nodewarden_runs_total', help: 'runs', type: 'counter', samples: [{ labels: {}, value: 7 }] },
  ]);
  t.equal(
    text,
    '# HELP nodewarden_findings open findings\n# TYPE nodewarden_findings gauge\nnodewarden_findings{check="disk.usage",severity="warning"} 2\n' +
      '# HELP nodewarden_runs_total runs\n# TYPE nodewarden_runs_total counter\nnodewarden_runs_total 7\n',
  );
});

t.test('label values with quotes, backslashes and newlines cannot break the exposition', async (t) => {
  const text = renderMetrics([{ name: 'm', help: 'h', type: 'gauge', samples: [{ labels: { path: 'C:\\x "q"\nnext' }, value: 1 }] }]);
  const line = text.split('\n')[2];
  t.equal(line, 'm{path="C:\\\\x \\"q\\"\\nnext"} 1');
  t.equal(text.split('\n').length, 4, 'the newline in a label did not add a line');
});

t.test('a value that is not finite is exported as 0, never NaN or Inf', async (t) => {
  const text = renderMetrics([{ name: 'm', help: 'h', type: 'gauge', samples: [{ labels: {}, value: NaN }, { labels: { a: 'b' }, value: Infinity }] }]);
  t.match(text, /^m 0$/m);
  t.match(text, /^m\{a="b"\} 0$/m);
  t.notMatch(text, /NaN|Inf/);
});

t.test('no metrics is an empty exposition, still newline-terminated', async (t) => {
  t.equal(renderMetrics([]), '\n');
});
