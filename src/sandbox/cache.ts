/**
 * `RUN --mount=type=cache` directories: kept in the store under `cache/mounts/<id>/` across builds,
 * mounted into the sandbox, never part of a layer.
 *
 *   cache/mounts/<id>/data        the cache (the only instance for `shared` and `locked`)
 *   cache/mounts/<id>/data-<n>    extra instances `private` creates while `data` is in use
 *   cache/mounts/<id>/<inst>.lock a lock held while a `locked` or `private` step uses the instance;
 *                                 it holds the owner's `<pid>.<start>` so a crashed holder's lock
 *                                 can be taken over
 *
 * Sharing follows BuildKit: `shared` (the default) lets any number of steps use the cache at once,
 * `locked` waits until no other `locked` or `private` step holds it, `private` takes a free instance
 * or makes a new one. The lock is a directory made with mkdir, which is atomic across processes.
 */
import { promises as fsp } from 'node:fs';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Mount } from '../dockerfile/instructions/mounts.js';
import { isAlive, ownerTag, parseOwnerTag } from '../store/owner.js';
import { RunMountError } from './errors.js';

export interface CacheLease {
  /** Host directory to mount. */
  dir: string;
  release(): Promise<void>;
}

/** The directory name for a cache id: readable when it can be, never `.`/`..`, never too long. */
export function cacheDirName(id: string): string {
  let enc = encodeURIComponent(id).replace(/^\.+$/, (m) => '%2E'.repeat(m.length));
  if (enc.length > 180) enc = `${enc.slice(0, 100)}~${createHash('sha256').update(id).digest('hex').slice(0, 32)}`;
  return enc;
}

export interface AcquireCacheOptions {
  /** `<store>/cache`. */
  cacheRoot: string;
  /** A directory whose content seeds a new cache (`from` + `source`, resolved by the build). */
  seed?: string;
  /** Chown the new cache root; false in a single-uid namespace, where only uid 0 exists. */
  canChown: boolean;
  signal?: AbortSignal;
  onWait?: (message: string) => void;
}

export async function acquireCache(mount: Mount, opts: AcquireCacheOptions): Promise<CacheLease> {
  const id = mount.cacheId || mount.target;
  const base = join(opts.cacheRoot, 'mounts', cacheDirName(id));
  await fsp.mkdir(base, { recursive: true });
  await fsp.writeFile(join(base, 'id'), id).catch(() => undefined);
  const sharing = mount.cacheSharing || 'shared';

  if (sharing === 'shared') {
    const dir = join(base, 'data');
    await createInstance(dir, mount, opts);
    return { dir, release: async () => undefined };
  }
  if (sharing === 'locked') {
    const lock = join(base, 'data.lock');
    let waited = false;
    while (!(await tryLock(lock))) {
      opts.signal?.throwIfAborted();
      if (!waited) opts.onWait?.(`waiting for the cache mount "${id}" (sharing=locked) held by another step`);
      waited = true;
      await sleep(50, undefined, opts.signal ? { signal: opts.signal } : undefined);
    }
    const dir = join(base, 'data');
    try {
      await createInstance(dir, mount, opts);
    } catch (err) {
      await unlock(lock);
      throw err;
    }
    return { dir, release: () => unlock(lock) };
  }
  // private: the first instance nobody holds.
  for (let n = 0; ; n++) {
    const inst = n === 0 ? 'data' : `data-${n}`;
    const lock = join(base, `${inst}.lock`);
    if (!(await tryLock(lock))) continue;
    const dir = join(base, inst);
    try {
      await createInstance(dir, mount, opts);
    } catch (err) {
      await unlock(lock);
      throw err;
    }
    return { dir, release: () => unlock(lock) };
  }
}

async function createInstance(dir: string, mount: Mount, opts: AcquireCacheOptions): Promise<void> {
  try {
    await fsp.mkdir(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return;
    throw err;
  }
  // mode/uid/gid apply when the cache is created, as in BuildKit.
  const mode = mount.mode ?? 0o755;
  if (opts.seed) {
    try {
      await fsp.cp(opts.seed, dir, { recursive: true, preserveTimestamps: true, verbatimSymlinks: true, force: true });
    } catch (err) {
      await fsp.rm(dir, { recursive: true, force: true });
      throw new RunMountError(`cannot seed the cache mount "${mount.cacheId || mount.target}" from ${opts.seed}: ${(err as Error).message}`);
    }
  }
  await fsp.chmod(dir, mode);
  const uid = mount.uid ?? 0;
  const gid = mount.gid ?? 0;
  if (opts.canChown || (uid === 0 && gid === 0)) await fsp.lchown(dir, uid, gid);
}

async function tryLock(lock: string): Promise<boolean> {
  try {
    await fsp.mkdir(lock);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    const owner = await fsp.readFile(join(lock, 'owner'), 'utf8').catch(() => undefined);
    const parsed = owner ? parseOwnerTag(`${owner}-`) : undefined;
    // A lock without an owner file is being made right now, or its maker died before writing it.
    const orphan = !owner && Date.now() - ((await fsp.stat(lock).catch(() => undefined))?.mtimeMs ?? Date.now()) > 10_000;
    if ((parsed && !isAlive(parsed)) || orphan) {
      // The holder died: take the lock over (rename first, so two takers cannot both win).
      const stale = `${lock}.stale-${ownerTag()}`;
      try {
        await fsp.rename(lock, stale);
      } catch {
        return false;
      }
      await fsp.rm(stale, { recursive: true, force: true });
      return tryLock(lock);
    }
    return false;
  }
  await fsp.writeFile(join(lock, 'owner'), ownerTag());
  return true;
}

async function unlock(lock: string): Promise<void> {
  await fsp.rm(lock, { recursive: true, force: true });
}

/** How many cache mounts the store holds. */
export async function countCacheMounts(cacheRoot: string): Promise<number> {
  return (await fsp.readdir(join(cacheRoot, 'mounts')).catch(() => [])).length;
}

/** Prefix of a mount being removed: `%p` is never made by cacheDirName, whose `%` is followed by hex digits. */
const PRUNING = '%pruning-';

/**
 * Takes every cache mount out of use (`kiln prune -a`, as `docker builder prune -a` drops BuildKit's)
 * by renaming it aside: quick, so the caller can do it while it makes sure no build is running (a
 * `shared` cache has no lock to tell it is in use), and a build that starts afterwards makes a fresh
 * one. Answers how many there were and the paths to delete (with those a dead prune left).
 */
export async function retireCacheMounts(cacheRoot: string): Promise<{ removed: number; doomed: string[] }> {
  const dir = join(cacheRoot, 'mounts');
  let names: string[];
  try {
    names = await fsp.readdir(dir);
  } catch {
    return { removed: 0, doomed: [] };
  }
  const doomed: string[] = [];
  let removed = 0;
  for (const name of names) {
    if (name.startsWith(PRUNING)) {
      // A prune that died before it finished.
      doomed.push(join(dir, name));
      continue;
    }
    const target = join(dir, `${PRUNING}${ownerTag()}-${name}`);
    try {
      await fsp.rename(join(dir, name), target);
    } catch {
      continue;
    }
    doomed.push(target);
    removed++;
  }
  return { removed, doomed };
}
