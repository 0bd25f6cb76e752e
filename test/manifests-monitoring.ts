// @live: promtool from Debian's prometheus package
// The monitoring manifests: alerting rules checked and unit-tested with promtool, the PrometheusRule
// equal to the plain rule file, every metric the rules and the dashboard read served by the code (so a
// renamed metric breaks this test), and the metrics the code serves accepted by promtool.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parse as parseYaml } from 'yaml';
import { pino } from 'pino';
import { Aggregator } from '../aggregator/server.js';
import { AgentServer } from '../agent/exporters/http.js';
import { requireLive } from './helpers/live.js';

const DIR = 'manifests/monitoring';
type Rule = { alert: string; expr: string; for?: string; labels: Record<string, string>; annotations: Record<string, string> };
type Groups = { groups: { name: string; rules: Rule[] }[] };
const rules = parseYaml(readFileSync(path.join(DIR, 'rules.yml'), 'utf8')) as Groups;
const allRules = rules.groups.flatMap((g) => g.rules);

/** The /metrics text of a real agent listener and a real aggregator (with a journal). */
async function servedMetrics(t: { teardown(fn: () => unknown): void }): Promise<{ agent: string; aggregator: string }> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'nw-metrics-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const agg = new Aggregator({ host: '127.0.0.1', port: 0, tokens: [], version: 'test', log: pino({ level: 'silent' }), journal: path.join(dir, 'journal.ndjson') });
  const { port } = await agg.start();
  t.teardown(() => agg.stop());
  const agent = new AgentServer({ runner: { active: () => [], statuses: () => [] }, node: 'n1', listen: { host: '127.0.0.1', port: 0 } });
  agent.onStatus({ name: 'disk', status: 'ok', durationMs: 12, at: new Date().toISOString() } as never);
  await agent.start();
  t.teardown(() => agent.stop());
  return {
    aggregator: await (await fetch(`http://127.0.0.1:${port}/metrics`)).text(),
    agent: await (await fetch(`http://127.0.0.1:${agent.address!.port}/metrics`)).text(),
  };
}

/** An alert's annotations as Prometheus expands them for these labels and value. */
function expanded(alert: string, labels: Record<string, string>, value = '1'): Record<string, string> {
  const rule = allRules.find((r) => r.alert === alert)!;
  return Object.fromEntries(Object.entries(rule.annotations).map(([k, v]) => [k, v.replace(/\{\{ \$labels\.(\w+) \}\}/g, (_, l: string) => labels[l] ?? '').replace(/\{\{ \$value \}\}/g, value)]));
}

const metricNames = (text: string) => new Set([...text.matchAll(/^# TYPE (\S+) /gm)].map((m) => m[1]!));
const namesIn = (expr: string) => [...expr.matchAll(/\bnodewarden_[a-z_]+\b/g)].map((m) => m[0]);

t.test('the PrometheusRule carries exactly the groups of rules.yml', async (t) => {
  const crd = parseYaml(readFileSync(path.join(DIR, 'prometheus-rule.yaml'), 'utf8')) as { apiVersion: string; kind: string; spec: Groups };
  t.equal(crd.kind, 'PrometheusRule');
  t.equal(crd.apiVersion, 'monitoring.coreos.com/v1');
  t.same(crd.spec, rules);
});

t.test('every alert has a severity, a summary, a description and a runbook section that exists', async (t) => {
  const doc = readFileSync('docs/alerts.md', 'utf8');
  const anchors = new Set([...doc.matchAll(/^## (\S+)/gm)].map((m) => m[1]!.toLowerCase()));
  t.ok(allRules.length >= 7, `${allRules.length} alerts`);
  for (const r of allRules) {
    t.match(r.labels['severity'], /^(critical|warning)$/, `${r.alert}: severity`);
    t.ok(r.annotations['summary'] && r.annotations['description'], `${r.alert}: summary and description`);
    t.equal(r.annotations['runbook'], `docs/alerts.md#${r.alert.toLowerCase()}`, `${r.alert}: runbook link`);
    t.ok(anchors.has(r.alert.toLowerCase()), `${r.alert}: docs/alerts.md has its section`);
    t.match(doc, new RegExp(`\\| ${r.alert} \\| ${r.labels['severity']} \\| ${r.for ?? '0m'} \\|`), `${r.alert}: the docs table states its severity and for:`);
  }
});

t.test('every metric the rules and the dashboard read is served by the agent or the aggregator', async (t) => {
  const served = await servedMetrics(t);
  const names = new Set([...metricNames(served.agent), ...metricNames(served.aggregator)]);
  const dashboard = JSON.parse(readFileSync(path.join(DIR, 'grafana-dashboard.json'), 'utf8')) as { uid: string; panels: { title: string; targets: { expr: string }[] }[] };
  t.equal(dashboard.uid, 'nodewarden');
  const exprs = [...allRules.map((r) => [r.alert, r.expr] as const), ...dashboard.panels.flatMap((p) => p.targets.map((x) => [p.title, x.expr] as const))];
  t.ok(dashboard.panels.length >= 10, `${dashboard.panels.length} panels`);
  for (const [where, expr] of exprs) {
    const used = namesIn(expr);
    t.ok(used.length > 0, `${where}: reads a nodewarden metric`);
    for (const n of used) t.ok(names.has(n), `${where}: ${n} is served`);
  }
});

t.test('promtool: the rules check, their unit tests pass, the served metrics pass check metrics', async (t) => {
  if (!requireLive(t, { commands: ['promtool'] })) return;
  const check = spawnSync('promtool', ['check', 'rules', path.join(DIR, 'rules.yml')], { encoding: 'utf8' });
  t.equal(check.status, 0, `promtool check rules: ${check.stdout}${check.stderr}`);
  const served = await servedMetrics(t);
  for (const [who, text] of Object.entries(served)) {
    const r = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' });
    t.equal(r.status, 0, `promtool check metrics (${who}): ${r.stdout}${r.stderr}`);
    t.equal(`${r.stdout}${r.stderr}`.trim(), '', `${who}: no lint complaint`);
  }
  const dir = mkdtempSync(path.join(os.tmpdir(), 'nw-promtool-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(path.join(dir, 'rules.yml'), readFileSync(path.join(DIR, 'rules.yml')));
  // Series as the agents and the aggregator write them, one sample a minute.
  const tests = {
    rule_files: ['rules.yml'],
    evaluation_interval: '1m',
    tests: [
      {
        interval: '1m',
        input_series: [
          { series: 'nodewarden_findings{node="w1",check="runtime.drift",severity="critical"}', values: '0 0 1 1 1 1 1 1 1 1' },
          { series: 'nodewarden_findings{node="w2",check="disk.usage",severity="critical"}', values: '1 0 0 0 0 0 0 0 0 0' },
          { series: 'nodewarden_findings{node="w3",check="disk.eviction",severity="critical"}', values: '0 0 0 0 0 1 1 1 1 1' },
          { series: 'nodewarden_aggregator_connected{node="w4"}', values: '1 0 0 0 0 0 0 0 0 0 0 0 0 0' },
          { series: 'nodewarden_aggregator_findings{check="node.silent",severity="warning"}', values: '1 1 1 1 1 1 1 1' },
          { series: 'nodewarden_aggregator_journal_ok', values: '1 1 0 0 0 0 0 0 0 0' },
          { series: 'nodewarden_collector_failures_total{node="w5",collector="mounts"}', values: '0+1x40' },
          // w7: two containers crash-looping for over an hour; w8: one for 5 minutes (a rollout fixed at once), and a disk warning for over an hour.
          { series: 'nodewarden_findings{node="w7",check="pod.crashLoop",severity="warning"}', values: '1 2+0x70' },
          { series: 'nodewarden_findings{node="w8",check="pod.crashLoop",severity="warning"}', values: '1 1 1 1 1 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0' },
          { series: 'nodewarden_findings{node="w8",check="disk.usage",severity="warning"}', values: '1+0x70' },
          // w9: one kill (its finding lasts 10 minutes), quiet, then kills that go on for over an hour.
          { series: 'nodewarden_findings{node="w9",check="kernel.oom",severity="warning"}', values: '0 0 1+0x9 0+0x10 1+0x70' },
          { series: 'nodewarden_collector_failures_total{node="w6",collector="disk"}', values: '0 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1' },
        ],
        alert_rule_test: [
          { eval_time: '5m', alertname: 'NodewardenCriticalFinding', exp_alerts: [{ exp_labels: { severity: 'critical', node: 'w1', check: 'runtime.drift' }, exp_annotations: expanded('NodewardenCriticalFinding', { node: 'w1', check: 'runtime.drift' }) }] },
          // The disk.usage that resolved after a minute never pages; drift not yet 2 minutes old does not either.
          { eval_time: '3m', alertname: 'NodewardenCriticalFinding', exp_alerts: [] },
          { eval_time: '5m', alertname: 'NodewardenEvictionImminent', exp_alerts: [{ exp_labels: { severity: 'critical', node: 'w3' }, exp_annotations: expanded('NodewardenEvictionImminent', { node: 'w3' }) }] },
          { eval_time: '9m', alertname: 'NodewardenAgentDisconnected', exp_alerts: [] },
          { eval_time: '12m', alertname: 'NodewardenAgentDisconnected', exp_alerts: [{ exp_labels: { severity: 'warning', node: 'w4' }, exp_annotations: expanded('NodewardenAgentDisconnected', { node: 'w4' }, '0') }] },
          { eval_time: '6m', alertname: 'NodewardenNodesSilent', exp_alerts: [{ exp_labels: { severity: 'warning' }, exp_annotations: expanded('NodewardenNodesSilent', {}) }] },
          { eval_time: '8m', alertname: 'NodewardenJournalDegraded', exp_alerts: [{ exp_labels: { severity: 'warning' }, exp_annotations: expanded('NodewardenJournalDegraded', {}) }] },
          { eval_time: '5m', alertname: 'NodewardenJournalDegraded', exp_alerts: [] },
          // mounts fails every minute: pages after 15m of it; disk failed once: never.
          // Crash loops: not before 15 minutes, then the node and how many; the 5-minute one never.
          { eval_time: '14m', alertname: 'NodewardenCrashLoop', exp_alerts: [] },
          { eval_time: '17m', alertname: 'NodewardenCrashLoop', exp_alerts: [{ exp_labels: { severity: 'warning', node: 'w7' }, exp_annotations: expanded('NodewardenCrashLoop', { node: 'w7' }, '2') }] },
          // An hour on: the crash loop does not raise the generic warning alert too; the disk warning does.
          { eval_time: '65m', alertname: 'NodewardenWarningFindings', exp_alerts: [{ exp_labels: { severity: 'warning', node: 'w8', check: 'disk.usage' }, exp_annotations: expanded('NodewardenWarningFindings', { node: 'w8', check: 'disk.usage' }) }] },
          // An OOM kill is said at once, for as long as its finding lasts; a kill that goes on for over an hour does not also raise the generic warning alert.
          { eval_time: '1m', alertname: 'NodewardenOOMKills', exp_alerts: [] },
          { eval_time: '3m', alertname: 'NodewardenOOMKills', exp_alerts: [{ exp_labels: { severity: 'warning', node: 'w9' }, exp_annotations: expanded('NodewardenOOMKills', { node: 'w9' }, '1') }] },
          { eval_time: '20m', alertname: 'NodewardenOOMKills', exp_alerts: [] },
          { eval_time: '90m', alertname: 'NodewardenWarningFindings', exp_alerts: [] },
          { eval_time: '90m', alertname: 'NodewardenOOMKills', exp_alerts: [{ exp_labels: { severity: 'warning', node: 'w9' }, exp_annotations: expanded('NodewardenOOMKills', { node: 'w9' }, '1') }] },
          { eval_time: '35m', alertname: 'NodewardenCollectorFailing', exp_alerts: [{ exp_labels: { severity: 'warning', node: 'w5', collector: 'mounts' }, exp_annotations: expanded('NodewardenCollectorFailing', { node: 'w5', collector: 'mounts' }) }] },
        ],
      },
    ],
  };
  writeFileSync(path.join(dir, 'tests.yml'), JSON.stringify(tests, null, 2));
  const r = spawnSync('promtool', ['test', 'rules', 'tests.yml'], { cwd: dir, encoding: 'utf8' });
  t.equal(r.status, 0, `promtool test rules:\n${r.stdout}${r.stderr}`);
});
