// The command table: parsing follows it exactly, and so does the help.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { COMMANDS, commandHelp, findCommand, parseCommand, usageLine, UsageError } from '../../cli/commands.js';

const BIN = path.resolve('dist/cli/main.js');

t.test('every flag in the table is accepted by its command, and only those', async (t) => {
  const all = new Set(COMMANDS.flatMap((c) => c.flags.map((f) => f.name)));
  for (const cmd of COMMANDS) {
    const args = cmd.flags.flatMap((f) => (f.type === 'string' ? [`--${f.name}`, 'x'] : [`--${f.name}`]));
    const parsed = parseCommand(cmd, args);
    for (const f of cmd.flags) t.ok(parsed.values[f.name] !== undefined, `${cmd.name} --${f.name}`);
    for (const other of all) {
      if (cmd.flags.some((f) => f.name === other)) continue;
      const err = t.throws(() => parseCommand(cmd, [`--${other}`, 'x'])) as UsageError;
      t.equal(err.code, 'NW_ERR_USAGE', `${cmd.name} rejects --${other}`);
    }
  }
});

t.test('short flags, repeated flags and positionals', async (t) => {
  const check = findCommand('check')!;
  t.equal(parseCommand(check, ['-v']).values['verbose'], true);
  t.same(parseCommand(check, ['--set', 'a=1', '--set', 'b=2']).values['set'], ['a=1', 'b=2']);
  t.equal(parseCommand(check, ['-h']).help, true);
  t.throws(() => parseCommand(check, ['stray']), { code: 'NW_ERR_USAGE' }, 'check takes no positionals');
  t.same(parseCommand(findCommand('find-immutable')!, ['/a', '/b']).positionals, ['/a', '/b']);
  t.same(parseCommand(findCommand('evicted')!, ['-A']).values['all-namespaces'], true);
});

t.test('usage and help derive from the table', async (t) => {
  const prune = findCommand('prune')!;
  t.match(usageLine(prune), /^nodewarden prune --node NAME \[--until DURATION\]/, 'a required flag has no brackets');
  t.match(usageLine(findCommand('check')!), /\[--set KEY=VALUE\]\.\.\./, 'a repeatable flag says so');
  const help = (await commandHelp(findCommand('check')!)).replace(/\s+/g, ' ');
  t.match(help, /-v, --verbose/);
  t.match(help, /--only NAMES\s+comma-separated collectors to run \(disk, sockstat, conntrack, sockets, pids, runtime, drift, immutable, mounts, pods, kernel, pressure, kubelet\), even ones the config disables; repeatable/);
});

t.test('the command line: help per command, unknown flags and commands exit 3 with one line', async (t) => {
  const run = (...args: string[]) => spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8' });
  const up = run('up', '--help');
  t.equal(up.status, 0);
  t.match(up.stdout, /--set KEY=VALUE\s+override one config key/);
  t.match(run('help', 'prune').stdout, /^Usage:\n  nodewarden prune --node NAME/);
  const bad = run('tail', '--host-root', '/');
  t.equal(bad.status, 3);
  t.match(bad.stderr, /Unknown option '--host-root'.*\nRun 'nodewarden tail --help' for usage\./s);
  const missing = run('prune');
  t.equal(missing.status, 3);
  t.match(missing.stderr, /prune needs --node NAME/);
  t.equal(run().status, 3, 'no command: the help, exit 3');
  t.equal(run('--version').stdout, '0.1.0\n');
});
