import t from 'tap';
import { renderWhoHolds } from '../../cli/who-holds.js';
import { painter } from '../../cli/format.js';

t.test('process names, command lines, container names and mount lines are shown escaped', async (t) => {
  const evil = '\x1b]0;all good\x07\x1b[2J\u009b2J';
  const text = renderWhoHolds(
    {
      target: `/mnt/x${evil}`,
      kind: 'path',
      matchedBy: ['/mnt/x'],
      namespaces: [{ namespace: 'mnt:[4026532000]', host: false, processes: 1, mounts: [`1 2 7:0 / /mnt/x${evil} rw - ext4 /dev/loop0 rw`], holders: [{ pid: 42, comm: `sleep${evil}`, cmdline: `sleep 1000 ${evil}\nfake line`, containerId: 'abc', workload: { containerName: `c${evil}`, pod: `p${evil}`, namespace: 'default' } }] }],
    } as never,
    painter(false),
  );
  t.notMatch(text, /[\u0000-\u0009\u000b-\u001f\u007f-\u009f]/, 'no control character');
  t.match(text, /sleep\\x1b\]0;all good\\x07/, 'shown as text');
  t.notMatch(text, /^fake line/m);
});
