/**
 * Where a RUN step's small scaffolding lives: the /dev skeleton, resolv.conf and hosts, the fstab,
 * the mount point of the root. These are a few dozen tiny files made and deleted per step, which
 * on a journaling disk costs milliseconds (and far more when other processes keep the journal busy);
 * in a tmpfs it costs microseconds. So they go to /dev/shm/kiln-<host uid>/ when that is a writable
 * tmpfs, else to the store's temp area. The step's upper dir and anything large stay in the store.
 *
 * Entries are named after their process (`<pid>.<start>-…`), as in the store's tmp/, and the first
 * use in a process removes those of processes that are gone.
 */
import { mkdirSync, readdirSync, statfsSync, accessSync, constants as fsc, chmodSync, lstatSync } from 'node:fs';
import { join } from 'node:path';
import { isAlive, parseOwnerTag } from '../store/owner.js';
import { removeTree } from '../store/snapshots.js';
import { readIdMap } from './idmap.js';

const TMPFS_MAGIC = 0x01021994;

let base: string | null | undefined;

/** The per-user scratch directory in a tmpfs, or undefined when there is none to use. */
export async function scratchBase(): Promise<string | undefined> {
  if (base !== undefined) return base ?? undefined;
  base = null;
  try {
    if (statfsSync('/dev/shm').type !== TMPFS_MAGIC) return undefined;
    accessSync('/dev/shm', fsc.W_OK);
    // The host uid: rootless kiln is uid 0 in its namespace, which must not share real root's directory.
    const map = readIdMap('uid');
    const hostUid = map.find((e) => e.inside === 0)?.outside ?? process.getuid?.() ?? 0;
    const dir = join('/dev/shm', `kiln-${hostUid}`);
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const st = lstatSync(dir);
    // Someone else's directory (or a symlink planted in the shared /dev/shm): do not use it.
    if (!st.isDirectory() || st.uid !== process.getuid?.()) return undefined;
    chmodSync(dir, 0o700);
    for (const name of readdirSync(dir)) {
      const owner = parseOwnerTag(name);
      if (owner && !isAlive(owner)) await removeTree(join(dir, name));
    }
    base = dir;
    return dir;
  } catch {
    return undefined;
  }
}
