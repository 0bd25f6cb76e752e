// The permissions table is what the code asks the API server for: each service account's rules cover the
// calls its code makes, and nothing else is granted (test/manifests.ts checks the manifests against it).
import t from 'tap';
import { PERMISSIONS, type PermissionRule } from '../../../agent/kube/permissions.js';

const allows = (rules: PermissionRule[], group: string, resource: string, verb: string) => rules.some((r) => r.apiGroups.includes(group) && r.resources.includes(resource) && r.verbs.includes(verb));

/** Every (group, resource, verb) a rule set grants. */
const grants = (rules: PermissionRule[]) => rules.flatMap((r) => r.apiGroups.flatMap((g) => r.resources.flatMap((res) => r.verbs.map((v) => `${g}/${res}/${v}`)))).sort();

t.test('the agent may read its Node, patch its status, create and list Events (probe failures), get/list/watch pods, and nothing more', async (t) => {
  const rules = PERMISSIONS['nodewarden-agent'];
  t.same(grants(rules), ['/events/create', '/events/list', '/nodes/get', '/nodes/status/patch', '/pods/get', '/pods/list', '/pods/watch']);
  t.notOk(allows(rules, '', 'nodes', 'patch'), 'not the Node object itself, only its status');
  t.notOk(allows(rules, '', 'pods', 'delete'), 'the agent never deletes pods');
  t.notOk(allows(rules, '', 'events', 'watch'), 'Events are listed on a loaded node only, never watched');
  t.notOk(allows(rules, '', 'secrets', 'get'));
});

t.test('the aggregator may review tokens, read pods and nodes, delete pods (evicted cleanup), and nothing more', async (t) => {
  const rules = PERMISSIONS['nodewarden-aggregator'];
  t.same(grants(rules), ['/nodes/get', '/pods/delete', '/pods/get', '/pods/list', 'authentication.k8s.io/tokenreviews/create']);
  t.notOk(allows(rules, '', 'pods', 'watch'));
  t.notOk(allows(rules, '', 'nodes/status', 'patch'), 'only agents write node conditions');
});

t.test('no wildcards anywhere', async (t) => {
  for (const rule of Object.values(PERMISSIONS).flat()) {
    t.notOk([...rule.apiGroups, ...rule.resources, ...rule.verbs].includes('*'), JSON.stringify(rule));
  }
});
