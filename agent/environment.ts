// Everything a collector's context is built from, made once per process from the config: host access,
// exec, runtimes and attributes. Commands and tests build it the same way.
import type { AttrAccess, Exec, FillersAccess, HostAccess, NodeAccess, PodAccess, RuntimeAccess } from '../collectors/types.js';
import { KmsgReader } from './host/kmsg.js';
import { createAttrAccess, createTreeWalker, nativeStatfs } from './host/attrs.js';
import type { TreeWalker } from '../collectors/common/fillers.js';
import type { Config } from './config.js';
import { exec } from './host/exec.js';
import { createHostAccess } from './host/access.js';
import { Runtimes } from './runtime/model.js';

export interface Environment {
  host: HostAccess;
  exec: Exec;
  runtime: RuntimeAccess & { close?(): void };
  attrs: AttrAccess | undefined;
  /** The node's pods and their diagnosis; set by the agent when it has an API server. */
  pods?: PodAccess;
  /** The agent's own Node (its Ready condition) and its pods' probe failures; set when it has an API server. */
  kube?: NodeAccess;
  /** The kernel log reader; the agent gives it a cursor file, check reads the whole ring. */
  kmsg?: KmsgReader;
  /** The du measurement in the background, for the disk collector's disk.imageGc; set by the agent. */
  fillers?: FillersAccess;
  /** The du walk (the native module), undefined when it is not built. */
  walker?: TreeWalker;
}

export function createEnvironment(config: Pick<Config, 'hostRoot' | 'runtime'>): Environment {
  const statfs = nativeStatfs();
  const host = createHostAccess({ root: config.hostRoot, exec, ...(statfs ? { statfs } : {}) });
  const walker = createTreeWalker();
  return { host, exec, runtime: new Runtimes(host, config.runtime), attrs: createAttrAccess(), kmsg: new KmsgReader({ host }), ...(walker ? { walker } : {}) };
}
