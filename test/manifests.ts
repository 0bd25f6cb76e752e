// The Kubernetes manifests: rendered as `kubectl kustomize manifests` renders them, validated offline
// against the Kubernetes API schemas (kubernetes-models), and held to the policies the README states.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseAllDocuments, parse as parseYaml } from 'yaml';
import { Namespace, ServiceAccount, ConfigMap, Secret, Service } from 'kubernetes-models/v1';
import { DaemonSet, Deployment } from 'kubernetes-models/apps/v1';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1';
import { NetworkPolicy } from 'kubernetes-models/networking.k8s.io/v1';
import { Role, ClusterRole, RoleBinding, ClusterRoleBinding } from 'kubernetes-models/rbac.authorization.k8s.io/v1';
import { loadConfig } from '../agent/config.js';
import { PERMISSIONS } from '../agent/kube/permissions.js';
import type { Test } from 'tap';

type Obj = { apiVersion: string; kind: string; metadata: { name: string; namespace?: string; labels?: Record<string, string> }; [k: string]: unknown };

const CLUSTER_SCOPED = new Set(['Namespace', 'ClusterRole', 'ClusterRoleBinding']);

/** The kustomize features this base uses (resources, namespace, labels), for machines without kubectl. */
function renderWithoutKubectl(dir: string): Obj[] {
  const k = parseYaml(readFileSync(path.join(dir, 'kustomization.yaml'), 'utf8')) as { namespace: string; resources: string[]; labels: { pairs: Record<string, string> }[] };
  const out: Obj[] = [];
  for (const file of k.resources) {
    for (const doc of parseAllDocuments(readFileSync(path.join(dir, file), 'utf8'))) {
      const o = doc.toJSON() as Obj | null;
      if (!o) continue;
      if (!CLUSTER_SCOPED.has(o.kind)) o.metadata.namespace = k.namespace;
      o.metadata.labels = { ...o.metadata.labels, ...Object.assign({}, ...k.labels.map((l) => l.pairs)) };
      out.push(o);
    }
  }
  return out;
}

function render(): { objects: Obj[]; by: string } {
  const r = spawnSync('kubectl', ['kustomize', 'manifests'], { encoding: 'utf8', timeout: 60_000 });
  if (r.status === 0) return { objects: parseAllDocuments(r.stdout).map((d) => d.toJSON() as Obj), by: 'kubectl kustomize' };
  return { objects: renderWithoutKubectl('manifests'), by: 'the built-in renderer (kubectl not found)' };
}

const { objects, by } = render();
const find = (kind: string, name: string) => objects.find((o) => o.kind === kind && o.metadata.name === name);
type Container = { name: string; image: string; args?: string[]; resources?: { requests?: object; limits?: object }; volumeMounts?: { name: string; mountPath: string; readOnly?: boolean }[]; env?: { name: string; valueFrom?: { fieldRef?: { fieldPath: string } } }[]; livenessProbe?: { httpGet?: { path: string } }; readinessProbe?: { httpGet?: { path: string } }; securityContext?: { capabilities?: { add?: string[]; drop?: string[] } } };
type PodSpec = { containers: Container[]; automountServiceAccountToken?: boolean; volumes?: { name: string; hostPath?: { path: string } }[]; hostPID?: boolean; hostNetwork?: boolean; tolerations?: { operator?: string }[]; priorityClassName?: string };
const podSpec = (o: Obj | undefined) => (o?.['spec'] as { template: { spec: PodSpec } } | undefined)?.template.spec;

t.test(`every rendered object validates against the Kubernetes API schemas (rendered by ${by})`, async (t) => {
  const models: Record<string, new (o: never) => { validate(): void }> = {
    'v1/Namespace': Namespace, 'v1/ServiceAccount': ServiceAccount, 'v1/ConfigMap': ConfigMap, 'v1/Secret': Secret, 'v1/Service': Service,
    'apps/v1/DaemonSet': DaemonSet, 'apps/v1/Deployment': Deployment, 'policy/v1/PodDisruptionBudget': PodDisruptionBudget,
    'networking.k8s.io/v1/NetworkPolicy': NetworkPolicy, 'rbac.authorization.k8s.io/v1/Role': Role, 'rbac.authorization.k8s.io/v1/ClusterRole': ClusterRole,
    'rbac.authorization.k8s.io/v1/RoleBinding': RoleBinding, 'rbac.authorization.k8s.io/v1/ClusterRoleBinding': ClusterRoleBinding,
  };
  t.ok(objects.length >= 9, `${objects.length} objects`);
  for (const o of objects) {
    const Model = models[`${o.apiVersion}/${o.kind}`];
    t.ok(Model, `a schema for ${o.apiVersion} ${o.kind}`);
    if (!Model) continue;
    t.doesNotThrow(() => new Model(o as never).validate(), `${o.kind}/${o.metadata.name} is valid`);
    if (!CLUSTER_SCOPED.has(o.kind)) t.equal(o.metadata.namespace, 'nodewarden', `${o.kind}/${o.metadata.name} in namespace nodewarden`);
  }
  // And the schema check is not a rubber stamp:
  const broken = structuredClone(find('DaemonSet', 'nodewarden-agent')) as Obj;
  (podSpec(broken)!.containers[0] as unknown as { resources: unknown }).resources = { requests: { cpu: { nope: true } } };
  t.throws(() => new DaemonSet(broken as never).validate(), 'a malformed DaemonSet is rejected');
});

t.test('policies: read-only host paths, pinned images, resources, probes, no API permission the code does not use', async (t) => {
  for (const o of objects.filter((x) => x.kind === 'DaemonSet' || x.kind === 'Deployment')) {
    const spec = podSpec(o)!;
    const hostVolumes = new Map((spec.volumes ?? []).filter((v) => v.hostPath).map((v) => [v.name, v.hostPath!.path] as const));
    for (const c of spec.containers) {
      const where = `${o.kind}/${o.metadata.name}/${c.name}`;
      t.match(c.image, /^[\w.\-/]+(:[\w.-]+|@sha256:[0-9a-f]{64})$/, `${where}: image pinned`);
      t.notMatch(c.image, /:latest$/, `${where}: not :latest`);
      t.ok(c.resources?.requests && c.resources.limits, `${where}: requests and limits set`);
      t.equal(c.livenessProbe?.httpGet?.path, '/healthz', `${where}: liveness on /healthz`);
      const ready = o.kind === 'DaemonSet' ? '/readyz' : '/healthz';
      t.equal(c.readinessProbe?.httpGet?.path, ready, `${where}: readiness on ${ready}`);
      t.same(c.securityContext?.capabilities?.drop, ['ALL'], `${where}: drops every capability it does not add`);
      // Every host path read-only, but the agent's own state directory (the kernel log cursor).
      for (const m of c.volumeMounts ?? []) {
        if (!hostVolumes.has(m.name)) continue;
        if (hostVolumes.get(m.name) === '/var/lib/nodewarden') t.equal(m.mountPath, '/var/lib/nodewarden', `${where}: its own state directory, writable`);
        else t.equal(m.readOnly, true, `${where}: host path ${m.name} mounted read-only`);
      }
    }
  }
  checkRbac(t, objects);
  t.equal(find('ServiceAccount', 'nodewarden-aggregator')?.['automountServiceAccountToken'], false, 'the account mounts no token by default; the Deployment asks for it');
  t.equal(podSpec(find('Deployment', 'nodewarden-aggregator'))?.automountServiceAccountToken, true, 'the aggregator has a token for TokenReviews (--agent-auth kubernetes)');
  const agentVolumes = (podSpec(find('DaemonSet', 'nodewarden-agent'))?.volumes ?? []) as { projected?: { sources: { serviceAccountToken?: { audience: string } }[] } }[];
  t.ok(agentVolumes.some((v) => v.projected?.sources.some((x) => x.serviceAccountToken?.audience === 'nodewarden')), 'the agent presents a bound token for audience nodewarden');
  t.equal(find('ServiceAccount', 'nodewarden-agent')?.['automountServiceAccountToken'], true, "the agent's token is for its exporter");
});

type Rule = { apiGroups: string[]; resources: string[]; verbs: string[] };
/** RBAC both ways: every rule is something the code uses; every permission the code uses is granted. */
function checkRbac(t: Test, objs: Obj[]): void {
  const granted = new Map<string, Set<string>>();
  for (const binding of objs.filter((o) => o.kind === 'ClusterRoleBinding' || o.kind === 'RoleBinding')) {
    const roleName = (binding['roleRef'] as { name: string }).name;
    const role = objs.find((o) => (o.kind === 'ClusterRole' || o.kind === 'Role') && o.metadata.name === roleName);
    for (const subject of (binding['subjects'] ?? []) as { kind: string; name: string }[]) {
      const used = PERMISSIONS[subject.name as keyof typeof PERMISSIONS];
      t.ok(used, `${binding.metadata.name} binds ${subject.name}, an account the code knows`);
      for (const r of ((role?.['rules'] ?? []) as Rule[])) {
        for (const res of r.resources) for (const v of r.verbs) {
          t.ok(used?.some((u) => u.resources.includes(res) && u.verbs.includes(v) && u.apiGroups.some((g) => r.apiGroups.includes(g))), `${roleName}: ${v} ${res} is used by the code (agent/kube/permissions.ts)`);
          granted.set(subject.name, (granted.get(subject.name) ?? new Set()).add(`${v} ${res}`));
        }
      }
    }
  }
  return void granted;
}

t.test('the DaemonSet: host namespaces, every node, node name, sizing from measurement', async (t) => {
  const ds = find('DaemonSet', 'nodewarden-agent');
  const spec = podSpec(ds)!;
  t.equal(spec.hostPID, true);
  t.equal(spec.hostNetwork, true);
  t.equal(spec.priorityClassName, 'system-node-critical');
  t.ok(spec.tolerations?.some((x) => x.operator === 'Exists'), 'tolerates every taint, NotReady included');
  const c = spec.containers[0]!;
  t.same(c.env?.find((e) => e.name === 'NODE_NAME')?.valueFrom?.fieldRef?.fieldPath, 'spec.nodeName');
  t.same(c.securityContext?.capabilities?.add?.sort(), ['DAC_READ_SEARCH', 'SYS_PTRACE']);
  t.equal((ds?.['spec'] as { updateStrategy: { type: string } }).updateStrategy.type, 'RollingUpdate');
  const src = readFileSync('manifests/agent-daemonset.yaml', 'utf8');
  for (const field of ['hostPID: true', 'hostNetwork: true', '- SYS_PTRACE', '- DAC_READ_SEARCH', 'mountPath: /host']) {
    const at = src.indexOf(field);
    const before = src.slice(Math.max(0, src.lastIndexOf('\n', at - 400)), at);
    t.match(before, /#/, `${field} has a comment saying why`);
  }
  t.match(src, /footprint/, 'the resources say which measurement they come from');
});

t.test('the config and the command lines in the manifests are ones nodewarden accepts', async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'nw-manifest-config-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'config.yaml');
  writeFileSync(file, (find('ConfigMap', 'nodewarden-agent-config')?.['data'] as Record<string, string>)['config.yaml']!);
  const config = loadConfig({ file, env: { NODE_NAME: 'n' } });
  t.equal(config.hostRoot, '/host');
  t.equal(config.prune.enabled, false, 'prune is off unless an operator turns it on');
  t.equal(config.kubernetes.enabled, true, 'the exporter is on in the DaemonSet');
  // Everything the exporter calls is granted to the agent.
  const role = find('ClusterRole', 'nodewarden-agent');
  for (const p of PERMISSIONS['nodewarden-agent']) for (const v of p.verbs) for (const r of p.resources) {
    t.ok(((role?.['rules'] ?? []) as Rule[]).some((x) => x.verbs.includes(v) && x.resources.includes(r)), `the agent may ${v} ${r}`);
  }
  const help = spawnSync(process.execPath, ['dist/cli/main.js', '--help'], { encoding: 'utf8' }).stdout;
  for (const o of objects.filter((x) => x.kind === 'DaemonSet' || x.kind === 'Deployment')) {
    const args = podSpec(o)!.containers[0]!.args ?? [];
    t.match(help, new RegExp(`nodewarden ${args[0]} `), `${o.metadata.name}: command ${args[0]}`);
    for (const a of args.slice(1)) t.match(help, new RegExp(a.split('=')[0]!.replace(/[-]/g, '\\-')), `${o.metadata.name}: flag ${a.split('=')[0]}`);
  }
});

t.test('the built-in renderer used without kubectl renders what kubectl renders', async (t) => {
  const r = spawnSync('kubectl', ['kustomize', 'manifests'], { encoding: 'utf8', timeout: 60_000 });
  if (r.status !== 0) return void t.skip('kubectl not here to compare with', () => {});
  const key = (o: Obj) => `${o.kind}/${o.metadata.name}`;
  const sort = (list: Obj[]) => [...list].sort((a, b) => key(a).localeCompare(key(b)));
  t.same(sort(renderWithoutKubectl('manifests')), sort(parseAllDocuments(r.stdout).map((d) => d.toJSON() as Obj)));
});

t.test('the evicted-cleanup component adds the schedule and exactly the RBAC it uses', async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'nw-overlay-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  // kustomize takes bases by relative path.
  writeFileSync(path.join(dir, 'kustomization.yaml'), `resources: [${path.relative(dir, path.resolve('manifests'))}]\ncomponents: [${path.relative(dir, path.resolve('manifests/components/evicted-cleanup'))}]\n`);
  const r = spawnSync('kubectl', ['kustomize', '--load-restrictor', 'LoadRestrictionsNone', dir], { encoding: 'utf8', timeout: 60_000 });
  if (r.status !== 0) return void t.skip(`kubectl cannot render the overlay here: ${r.stderr.slice(0, 200)}`, () => {});
  const objs = parseAllDocuments(r.stdout).map((d) => d.toJSON() as Obj);
  const dep = objs.find((o) => o.kind === 'Deployment')!;
  const args = podSpec(dep)!.containers[0]!.args ?? [];
  t.ok(args.includes('--evicted-cleanup=10m') && args.includes('--evicted-older-than=1h'), 'the aggregator runs the cleanup');
  t.equal((dep['spec'] as { template: { spec: { automountServiceAccountToken: boolean } } }).template.spec.automountServiceAccountToken, true, 'with a token');
  t.ok(objs.some((o) => o.kind === 'ClusterRole' && o.metadata.name === 'nodewarden-aggregator-evicted-cleanup'));
  checkRbac(t, objs);
  for (const o of objs) if (o.kind === 'ClusterRole') t.doesNotThrow(() => new ClusterRole(o as never).validate());
});
