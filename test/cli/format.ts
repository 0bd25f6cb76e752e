import t from 'tap';
import { formatUptime, painter, table, truncate, useColor } from '../../cli/format.js';

t.test('table: columns aligned under headers, numbers right-aligned, no trailing spaces', async (t) => {
  const out = table(['PID', 'COMM', 'CMDLINE'], [['7', 'sleep', 'sleep 600'], ['12345', 'containerd-shim', 'x']], { rightAlign: [0] });
  t.equal(out, ['  PID  COMM             CMDLINE', '    7  sleep            sleep 600', '12345  containerd-shim  x'].join('\n'));
});

t.test('table: colour codes do not count toward widths', async (t) => {
  const p = painter(true);
  const out = table(['SEV', 'NODE'], [[p.severity('critical', 'critical'), 'a'], ['ok', 'b']]);
  const plain = out.replace(/\x1b\[[0-9;]*m/g, '');
  t.equal(plain, ['SEV       NODE', 'critical  a', 'ok        b'].join('\n'));
});

t.test('table: lines over maxWidth are cut with an ellipsis (plain lines only)', async (t) => {
  const out = table(['A', 'B'], [['x'.repeat(10), 'y'.repeat(10)]], { maxWidth: 12 });
  t.same(out.split('\n').map((l) => l.length), [12, 12]);
  t.match(out.split('\n')[1], /^x{10} …$/);
  const coloured = table(['A'], [[painter(true).bold('z'.repeat(20))]], { maxWidth: 5 });
  t.match(coloured, /z{20}/, 'a line with colour codes is not cut through a code');
});

t.test('painter: codes only when enabled; severities in red, yellow, cyan', async (t) => {
  const on = painter(true);
  t.equal(on.severity('critical', 'x'), '\x1b[31;1mx\x1b[0m');
  t.equal(on.severity('warning', 'x'), '\x1b[33mx\x1b[0m');
  t.equal(on.severity('info', 'x'), '\x1b[36mx\x1b[0m');
  t.equal(on.bold('x'), '\x1b[1mx\x1b[0m');
  const off = painter(false);
  t.same([off.bold('x'), off.dim('x'), off.severity('critical', 'x')], ['x', 'x', 'x']);
});

t.test('colour only on a terminal, never with NO_COLOR or TERM=dumb', async (t) => {
  const tty = { isTTY: true } as NodeJS.WriteStream;
  t.equal(useColor(tty, {}), true);
  t.equal(useColor(tty, { NO_COLOR: '' }), false, 'NO_COLOR set, even empty');
  t.equal(useColor(tty, { TERM: 'dumb' }), false);
  t.equal(useColor({ isTTY: false } as NodeJS.WriteStream, {}), false, 'a pipe or a file');
});

t.test('uptime and truncation', async (t) => {
  t.equal(formatUptime(59), '0m');
  t.equal(formatUptime(3 * 3600 + 5 * 60), '3h 5m');
  t.equal(formatUptime(2 * 86400 + 7 * 3600 + 59), '2d 7h');
  t.equal(truncate('abcdef', 6), 'abcdef');
  t.equal(truncate('abcdefg', 6), 'abcde…');
});
