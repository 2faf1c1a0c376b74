/**
 * Which user namespace this process is in, read from its id maps. Apart from the code that enters
 * kiln's namespace (userns.ts, which spawns helpers), so that a command run as root, or already
 * inside, learns it without loading that code.
 */
import { isIdentityMap, mappedCount, readIdMap, type IdMapEntry } from './idmap.js';

export interface NamespaceInfo {
  /** `root`: real root, no user namespace. `rootless`: root inside a user namespace. */
  mode: 'root' | 'rootless';
  /** `host` for real root; `full` with subordinate ids; `single` when only root is mapped. */
  mapping: 'host' | 'full' | 'single';
  /** Only root is mapped: image owners live in kiln's records, not on disk. */
  squashed: boolean;
  uidMap: IdMapEntry[];
  gidMap: IdMapEntry[];
}

/** What this process is: root (real or in a namespace), or undefined for a plain user. */
export function currentNamespace(): NamespaceInfo | undefined {
  if (process.geteuid?.() !== 0) return undefined;
  const uidMap = readIdMap('uid');
  const gidMap = readIdMap('gid');
  if (uidMap.length === 0 || isIdentityMap(uidMap)) {
    return { mode: 'root', mapping: 'host', squashed: false, uidMap, gidMap };
  }
  const single = mappedCount(uidMap) <= 1 || mappedCount(gidMap) <= 1;
  return { mode: 'rootless', mapping: single ? 'single' : 'full', squashed: single, uidMap, gidMap };
}
