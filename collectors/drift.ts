// drift: docker's view against containerd's task against the kernel. The runbooks' "dockerd and
// containerd out of sync": docker says running while the task is STOPPED or gone and the process is dead.
import type { Observation } from '../protocol/finding.js';
import { s, type Infer } from '../protocol/schema.js';
import { confirmSuspects, containerFacts, type Suspect } from './common/confirm.js';
import { evaluateOrphan, findOrphans, hostMountsOnce, orphanFacts, readHoldings, readProcesses, type Known } from './common/orphans.js';
import { PERMISSION_DENIED, type CollectResult, type Collector, type HostAccess, type RuntimeContainer } from './types.js';

export const driftConfigSpec = s.object({
  orphanMinAge: s.duration({ default: '1m', min: 1000, doc: "a runc init or containerd shim that no runtime knows is runtime.orphan only once it is this old (a container being created has a runc init for a moment)" }),
});
export type DriftConfig = Infer<typeof driftConfigSpec>;

export interface DriftData {
  checked: number;
  /** Suspects seen on the first read, and how many the second read after the settle window dismissed. */
  suspected: number;
  dismissed: number;
  /**
   * Containers docker says run while containerd no longer has them at all: their facts and since when
   * (ms) they have been seen so, held back by `holdBack`.
   */
  heldBack?: Record<string, { facts: string; since: number }>;
  /** Confirmed orphans: subject -> their facts (pids and start times), carried to the next run. */
  orphans?: Record<string, string>;
  /** Set when docker does not answer: what was left out (containerd's own containers were still checked). */
  notCompared?: string;
}

/** Containers only containerd manages, outside docker's namespace: comparable while docker is away. */
export const onlyContainerds = (c: RuntimeContainer): boolean => c.manager === 'containerd' && c.namespace !== 'moby' && !c.docker;

/**
 * How long docker running while containerd has no such container must last before it fires: longer
 * than docker's longest restart back-off (1 minute), because a crash-looping `--restart always`
 * container was seen in that state, with the same dead pid, for several seconds at a time on a loaded
 * node (dockerd handling the exit and waiting to restart it). Real drift of this kind does not mend
 * itself, and it is rare; the usual drift (a STOPPED or missing task) fires at once.
 */
export const HOLD_BACK_MS = 90_000;

/**
 * Drift is read a third time this many settle windows after the second read (6 s by default), and
 * fires only if all three reads agree. When containerd restarts while a container's process dies,
 * dockerd mends its view itself once it has reconnected and handled the exit; on a loaded node that
 * took longer than one settle window (seen in the live test on this VM under a full test run), and a
 * critical finding that resolves itself seconds later is a false page. Real drift does not mend
 * itself, so waiting a few more seconds costs nothing but those seconds, and only when there is a
 * suspect.
 */
export const DRIFT_RECHECK_FACTOR = 3;

/** Pure: which confirmed drift findings wait (see HOLD_BACK_MS), and what to remember for next time. */
export function holdBack(
  confirmed: readonly Observation[],
  byId: ReadonlyMap<string, RuntimeContainer>,
  previous: Record<string, { facts: string; since: number }> | undefined,
  now: number,
): { fire: Observation[]; heldBack: Record<string, { facts: string; since: number }> } {
  const fire: Observation[] = [];
  const held: Record<string, { facts: string; since: number }> = {};
  for (const o of confirmed) {
    const c = byId.get(o.subject);
    if (c?.docker?.running && !c.containerd?.known) {
      const facts = containerFacts(c);
      const before = previous?.[o.subject];
      const since = before && before.facts === facts ? before.since : now;
      held[o.subject] = { facts, since };
      if (now - since < HOLD_BACK_MS) continue;
    }
    fire.push(o);
  }
  return { fire, heldBack: held };
}

/** What the kernel says about a pid: alive, a zombie, or gone. */
export type PidState = 'alive' | 'zombie' | 'gone';

export async function pidState(host: HostAccess, pid: number): Promise<PidState> {
  if (pid <= 0) return 'gone';
  const stat = await host.readText(host.procPath(pid, 'stat'));
  if (stat === undefined) return 'gone';
  // "pid (comm) S ...": the state follows the last ')', since comm may hold spaces and parentheses.
  const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
  return state === 'Z' || state === 'X' ? 'zombie' : 'alive';
}

function sideBySide(c: RuntimeContainer, kernel: PidState | undefined, pid: number | undefined): Observation['evidence'] {
  return {
    container: c.id,
    name: c.name,
    docker: c.docker ? { status: c.docker.status, running: c.docker.running, pid: c.docker.pid } : null,
    containerd: c.containerd ? { known: c.containerd.known, namespace: c.namespace ?? null, task: c.containerd.task ? { status: c.containerd.task.status, pid: c.containerd.task.pid } : null } : null,
    kernel: pid === undefined ? null : { pid, state: kernel ?? 'unknown' },
  };
}

// Remedies are commands a person can paste as they are: the advice that is not a command (drain the
// node first) rides in a trailing shell comment, so pasting the whole line runs only the commands.
const DRAIN = 'drain the node first: kubectl drain NODE --ignore-daemonsets --delete-emptydir-data';

/** Pure: the drift rules, given each container's views and its pid's state in the kernel. */
export function evaluateDrift(containers: readonly RuntimeContainer[], pids: ReadonlyMap<number, PidState>): Observation[] {
  const out: Observation[] = [];
  const short = (id: string) => id.slice(0, 12);
  for (const c of containers) {
    const d = c.docker;
    const task = c.containerd?.task;
    const base = { check: 'runtime.drift', subject: c.id, workload: c.workload };
    if (d?.running) {
      const kernel = pids.get(d.pid);
      const taskWrong = !task || task.status === 'STOPPED' || task.status === 'UNKNOWN';
      if (taskWrong || kernel !== 'alive') {
        const what = !c.containerd?.known ? 'containerd has no such container' : !task ? 'containerd has no task for it' : `containerd's task is ${task.status}`;
        out.push({
          ...base,
          severity: 'critical',
          message: `docker says container ${c.name} (${short(c.id)}) is running with pid ${d.pid}, but ${what} and the process is ${kernel === 'alive' ? 'alive' : kernel === 'zombie' ? 'a zombie' : 'gone'}: dockerd and containerd are out of sync, and kubelet sees a container that is not there.`,
          evidence: sideBySide(c, kernel, d.pid),
          remedy: `systemctl restart docker  # ${DRAIN}; then docker container prune; never kill the shim by hand`,
        });
        continue;
      }
    }
    // Restart back-off (State.Restarting) is a transition by design: docker starts a new task soon.
    if (d && !d.running && !d.restarting && task?.status === 'RUNNING' && pids.get(task.pid) === 'alive') {
      out.push({
        ...base,
        severity: 'warning',
        message: `docker shows container ${c.name} (${short(c.id)}) as ${d.status}, but containerd's task is RUNNING with pid ${task.pid}: a process docker no longer manages is still running.`,
        evidence: sideBySide(c, pids.get(task.pid), task.pid),
        remedy: `ps -f ${task.pid}; systemctl restart docker  # ${DRAIN}`,
      });
      continue;
    }
    if (!d && c.namespace === 'moby' && task?.status === 'RUNNING') {
      out.push({
        ...base,
        severity: 'warning',
        message: `containerd runs a task ${short(c.id)} (pid ${task.pid}) in docker's namespace moby, but docker has no such container: it is invisible to docker and kubelet.`,
        evidence: sideBySide(c, pids.get(task.pid), task.pid),
        // SIGKILL (a pid-1 process may ignore SIGTERM), then the task, then the container: ctr refuses to
        // remove a container whose task still exists.
        remedy: `ctr -n moby task kill -s SIGKILL ${c.id}; ctr -n moby task rm -f ${c.id}; ctr -n moby container rm ${c.id}  # first see what it runs: ps -f ${task.pid}`,
      });
      continue;
    }
    if (task?.status === 'RUNNING' && !d?.running && pids.get(task.pid) !== 'alive') {
      out.push({
        ...base,
        severity: 'critical',
        message: `containerd says the task of ${c.name} (${short(c.id)}) is RUNNING with pid ${task.pid}, but that process is ${pids.get(task.pid) === 'zombie' ? 'a zombie' : 'gone'}: the shim lost track of it.`,
        evidence: sideBySide(c, pids.get(task.pid), task.pid),
        remedy: `systemctl restart containerd  # ${DRAIN}; ctr -n ${c.namespace ?? 'k8s.io'} task ls | grep ${short(c.id)} shows the task`,
      });
    }
  }
  return out;
}

/** The orphan suspects (runc init and shims no runtime knows), with what they hold. */
async function orphanSuspects(host: HostAccess, containers: readonly RuntimeContainer[], namespaces: readonly string[], minAgeMs: number): Promise<Suspect[]> {
  const known: Known = {
    ids: new Set(containers.map((c) => c.id)),
    containerdKeys: new Set(containers.filter((c) => c.containerd?.known).map((c) => `${c.namespace ?? ''}/${c.id}`)),
    taskPids: new Set(containers.flatMap((c) => [c.containerd?.task?.pid, c.docker?.pid]).filter((p): p is number => typeof p === 'number' && p > 0)),
    namespaces: new Set(namespaces),
  };
  const procs = await readProcesses(host);
  const out: Suspect[] = [];
  const hostMounts = hostMountsOnce(host);
  for (const o of findOrphans(procs, known, Math.round(minAgeMs / 1000))) {
    out.push({ observation: evaluateOrphan(o, await readHoldings(host, o, procs, hostMounts)), facts: orphanFacts(o) });
  }
  return out;
}

export const drift: Collector<DriftConfig, DriftData> = {
  name: 'drift',
  description: "docker's view against containerd's task against the kernel, per container; runc init and shims no runtime knows",
  checks: ['runtime.drift', 'runtime.orphan'],
  conditions: { 'runtime.drift': 'NodewardenRuntimeDrift', 'runtime.orphan': null },
  defaultIntervalMs: 30_000,
  defaultTimeoutMs: 20_000,
  waitsFor: ['runtime.timeout'],
  configSpec: driftConfigSpec,
  async collect(ctx) {
    // Only the latest read's verdict counts: a runtime that stops answering between the two reads
    // makes the collector unavailable, not a source of findings.
    let verdict: CollectResult<DriftData> | undefined;
    let checked = 0;
    let lastById = new Map<string, RuntimeContainer>();
    let notCompared: string | undefined;
    const carried: Suspect[] = [];
    /** Checks the latest read could not judge (a runtime did not answer). */
    let unjudged = new Set<string>();
    const orphanFactsSeen = new Map<string, string>();
    // A third read, DRIFT_RECHECK_FACTOR settle windows later: see DRIFT_RECHECK_FACTOR.
    const recheck = { moreWaitsMs: [DRIFT_RECHECK_FACTOR * ctx.runtime.settleMs], unjudged: () => unjudged };
    const { observations, suspected, dismissed } = await confirmSuspects(ctx, async (since) => {
      verdict = undefined;
      unjudged = new Set(['runtime.drift', 'runtime.orphan']);
      const snap = await ctx.runtime.snapshot(since === undefined ? {} : { since });
      const docker = snap.runtimes.find((r) => r.name === 'docker');
      const containerd = snap.runtimes.find((r) => r.name === 'containerd');
      if (containerd?.status === 'absent') {
        verdict = { kind: 'no-data', reason: 'no containerd socket on this node' };
        return [];
      }
      // Without containerd nothing can be compared. Without docker (down, refused, or not on this node)
      // containerd's own containers (k8s.io) still can: one runtime's absence never stops the other's checks.
      const down = [docker, containerd].filter((r) => r && r.status !== 'ok' && r.status !== 'absent');
      if (containerd?.status !== 'ok' || (docker?.status === 'forbidden')) {
        verdict = { kind: 'unavailable', reason: down.some((r) => r!.status === 'forbidden') ? `${PERMISSION_DENIED}: ${down.map((r) => r!.socket).join(', ')}` : down.map((r) => `${r!.name} ${r!.status}`).join(', ') };
        return [];
      }
      const dockerOk = docker === undefined || docker.status === 'ok';
      notCompared = dockerOk ? undefined : `docker ${docker.status}: its containers (namespace moby) are not compared until it answers`;
      const containers = dockerOk ? snap.containers : snap.containers.filter(onlyContainerds);
      const pids = new Map<number, PidState>();
      for (const c of containers) {
        for (const pid of [c.docker?.pid, c.containerd?.task?.pid]) {
          if (pid && !pids.has(pid)) pids.set(pid, await pidState(ctx.host, pid));
        }
      }
      checked = containers.length;
      unjudged = new Set(['runtime.orphan']);
      const byId = new Map(containers.map((c) => [c.id, c]));
      lastById = byId;
      const suspects: Suspect[] = evaluateDrift(containers, pids).map((observation) => ({ observation, facts: containerFacts(byId.get(observation.subject)) }));
      // Orphans are judged only when every runtime that is here answered: a process is an orphan only if
      // no runtime knows it, and a runtime that does not answer cannot say.
      if (dockerOk || docker?.status === 'absent') {
        unjudged = new Set();
        const orphans = await orphanSuspects(ctx.host, snap.containers, ctx.runtime.namespaces ?? ['moby', 'k8s.io'], ctx.config.orphanMinAge);
        // An orphan confirmed in an earlier run, still the same processes (pid and start time) and still
        // unknown: no longer transient, so it fires without waiting out confirmation again (a node with a
        // leaked shim would otherwise wait on every run).
        const before = ctx.previous?.orphans ?? {};
        for (const o of orphans) {
          orphanFactsSeen.set(o.observation.subject, o.facts);
          // (In the agent the runner's confirmation store keeps confirmed orphans confirmed; this is for check and runOnce.)
          if (!ctx.confirmations && since === undefined && before[o.observation.subject] === o.facts) carried.push(o);
          else if (!carried.some((c) => c.observation.subject === o.observation.subject)) suspects.push(o);
        }
      }
      return suspects;
    }, recheck);
    if (verdict) return verdict;
    // Carried orphans are re-read on the first read only: one that went since is simply not there.
    const all = [...observations, ...carried.map((c) => c.observation)];
    // Orphans not judged in this run (docker did not answer): those firing stay as they were.
    if (unjudged.has('runtime.orphan')) {
      for (const f of ctx.active?.() ?? []) {
        if (f.check === 'runtime.orphan' && !all.some((o) => o.check === f.check && o.subject === f.subject)) {
          all.push({ check: f.check, severity: f.severity, subject: f.subject, message: f.message, evidence: f.evidence, remedy: f.remedy, ...(f.workload ? { workload: f.workload } : {}) });
        }
      }
    }
    const orphans: Record<string, string> = {};
    for (const c of carried) orphans[c.observation.subject] = c.facts;
    for (const o of observations) if (o.check === 'runtime.orphan') orphans[o.subject] = orphanFactsSeen.get(o.subject) ?? '';
    const { fire, heldBack } = holdBack(all, lastById, ctx.previous?.heldBack, ctx.now());
    return { kind: 'ok', observations: fire, data: { checked, suspected, dismissed, heldBack, orphans, ...(notCompared ? { notCompared } : {}) } };
  },
};
