// One way to find the API server for every command: $KUBECONFIG, ~/.kube/config, in-cluster, and one
// line naming what was tried when none is there.
import t from 'tap';
import { locateApiServer } from '../../protocol/kubeconfig.js';
import { NodewardenError } from '../../protocol/errors.js';
import { runSync } from '../helpers/processes.js';

const SA = '/var/run/secrets/kubernetes.io/serviceaccount/token';

t.test('the order: $KUBECONFIG, then ~/.kube/config, then in-cluster', async (t) => {
  const has = (...files: string[]) => (p: string) => files.includes(p);
  t.same(locateApiServer('x', { KUBECONFIG: '/a:/b', HOME: '/h' }, has('/b', '/h/.kube/config')), { kind: 'kubeconfig', from: '$KUBECONFIG (/a:/b)' });
  t.same(locateApiServer('x', { KUBECONFIG: '/a', HOME: '/h' }, has('/h/.kube/config')), { kind: 'kubeconfig', from: '/h/.kube/config' }, 'a $KUBECONFIG that is not there falls through');
  t.same(locateApiServer('x', { HOME: '/h', KUBERNETES_SERVICE_HOST: '10.0.0.1' }, has(SA)), { kind: 'in-cluster' });
});

t.test('none found: one line that says what was tried', async (t) => {
  const err = t.throws(() => locateApiServer('evicted', { HOME: '/h', KUBECONFIG: '/nope' }, () => false)) as NodewardenError;
  t.equal(err.code, 'NW_ERR_CONFIG');
  t.equal(err.message, 'evicted: no Kubernetes API server found; tried $KUBECONFIG (/nope: no such file), /h/.kube/config (not there), in-cluster (not in a pod: KUBERNETES_SERVICE_HOST unset). Set KUBECONFIG to a kubeconfig file, or run it in a pod');
});

t.test('evicted without any kubeconfig says what it tried, not "HTTP protocol is not allowed"', async (t) => {
  const r = runSync(['evicted'], { HOME: '/nonexistent-nw-home', KUBECONFIG: '', KUBERNETES_SERVICE_HOST: '' });
  t.equal(r.code, 3);
  t.match(r.stderr, /^nodewarden: evicted: no Kubernetes API server found; tried \$KUBECONFIG \(unset\), \/nonexistent-nw-home\/\.kube\/config \(not there\), in-cluster/);
  t.notMatch(r.stderr, /skipTLSVerify/);
});
