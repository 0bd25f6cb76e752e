// Whether a runtime whose socket is missing belongs on this node (then it is down, and paged) or not
// (absent: a CRI-only node where docker was installed once, or left behind by the move off dockershim).
// Only real evidence counts: containers in its data root, or kubelet's runtime endpoint naming it.
// An empty data root proves nothing: `apt install docker.io` makes one, and so does a migration.
import type { HostAccess, RuntimeName } from '../../collectors/types.js';

/** Files where kubelet's flags and config usually live (kubeadm, distro defaults), besides --config. */
export const KUBELET_FLAG_FILES = ['/var/lib/kubelet/kubeadm-flags.env', '/etc/default/kubelet', '/etc/sysconfig/kubelet'];
export const KUBELET_CONFIG = '/var/lib/kubelet/config.yaml';

/** The most we read of one kubelet file or cmdline: a hostile or corrupt file cannot make us buffer more. */
const MAX_TEXT = 256 * 1024;

/** Pure: the value of `--name=value` or `--name value` in an argument list (the last one wins, as kubelet's flags do). */
export function flagValue(args: readonly string[], name: string): string | undefined {
  let out: string | undefined;
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === `--${name}`) out = args[i + 1];
    else if (a.startsWith(`--${name}=`)) out = a.slice(name.length + 3);
  }
  return out?.replace(/^["']|["']$/g, '');
}

/** Pure: the words of a flags file (KUBELET_KUBEADM_ARGS="--a=b --c d"), quotes dropped. */
export function flagWords(text: string): string[] {
  return text.slice(0, MAX_TEXT).split(/[\s"']+/).filter(Boolean).map((w) => w.replace(/^[A-Z_]+=/, '')).filter(Boolean);
}

/** Pure: `containerRuntimeEndpoint:` of a KubeletConfiguration (YAML or JSON), if set. */
export function configEndpoint(text: string): string | undefined {
  const m = /["']?containerRuntimeEndpoint["']?\s*:\s*["']?([^"'\s,}]+)/.exec(text.slice(0, MAX_TEXT));
  return m?.[1];
}

/**
 * Pure: which runtime kubelet talks to, from its command line, its flag files and its config file:
 * `--container-runtime-endpoint` (flags win over the config file, as in kubelet), or the dockershim of
 * kubelets before 1.24 (`--container-runtime=docker`). Undefined when nothing says.
 */
export function kubeletRuntime(args: readonly string[], config: string | undefined): { runtime: RuntimeName; endpoint: string } | undefined {
  const endpoint = flagValue(args, 'container-runtime-endpoint') ?? (config === undefined ? undefined : configEndpoint(config));
  if (endpoint) {
    if (/docker/i.test(endpoint)) return { runtime: 'docker', endpoint };
    if (/containerd/i.test(endpoint)) return { runtime: 'containerd', endpoint };
    return undefined;
  }
  if (flagValue(args, 'container-runtime') === 'docker') return { runtime: 'docker', endpoint: '--container-runtime=docker (dockershim)' };
  return undefined;
}

/** kubelet's arguments: its running process's command line, then its flag files. */
async function kubeletArgs(host: HostAccess): Promise<string[]> {
  const args: string[] = [];
  for (const f of KUBELET_FLAG_FILES) {
    const text = await host.readText(host.hostPath(f));
    if (text) args.push(...flagWords(text));
  }
  // A host root with no /proc (a captured tree) has no kubelet process to ask.
  const pids = await host.pids().catch(() => [] as number[]);
  for (const pid of pids) {
    const comm = (await host.readText(host.procPath(pid, 'comm')))?.trim();
    if (comm !== 'kubelet') continue;
    const cmdline = await host.readText(host.procPath(pid, 'cmdline'));
    // The running process last: what it was started with beats what a file says now.
    if (cmdline) args.push(...cmdline.slice(0, MAX_TEXT).split('\0').filter(Boolean));
    break;
  }
  return args;
}

/**
 * Why a runtime whose socket is missing belongs here, or undefined when nothing shows it does.
 * `root`: its data root (dockerd's /var/lib/docker, containerd's /var/lib/containerd).
 */
export async function runtimeEvidence(host: HostAccess, name: RuntimeName, root: string): Promise<string | undefined> {
  if (name === 'docker') {
    const containers = await host.list(host.hostPath(`${root}/containers`));
    if (containers && containers.length > 0) return `docker's data root ${root}/containers holds ${containers.length} container(s)`;
  } else if (await host.exists(host.hostPath(`${root}/io.containerd.metadata.v1.bolt`))) {
    return `containerd's data root ${root} holds its metadata`;
  }
  const args = await kubeletArgs(host);
  const configPath = flagValue(args, 'config') ?? KUBELET_CONFIG;
  const config = await host.readText(host.hostPath(configPath));
  const kubelet = kubeletRuntime(args, config);
  if (kubelet?.runtime === name) return `kubelet's runtime endpoint is ${kubelet.endpoint}`;
  return undefined;
}
