/**
 * Leases pin content against garbage collection while it is being produced or used: a build or a
 * load takes a lease and adds every digest it writes or depends on (blobs, and diffIDs for
 * snapshots and compressed variants) *before* the content appears, so a concurrent prune never sees
 * it unreferenced.
 *
 * A lease is one JSON file, `leases/<id>.json`:
 *   { "id", "label"?, "pid", "start", "hostname", "created", "expires"?, "digests": [...] }
 * It is bound to its process (pid + start time): when that process is gone the lease has expired
 * and the next prune deletes it. `detached` leases outlive the process and need `expires`.
 * Additions rewrite the file atomically under the store lock, which orders them against a running
 * garbage collection (that holds the lock from mark to sweep).
 *
 * What a lease file costs, since every step of a build adds to one:
 * - No file until the first digest: an empty lease protects nothing.
 * - Additions made while a write is waiting for the lock join that write, so a burst of additions
 *   is one rewrite.
 * - A process-bound lease is replaced by rename but never fsynced: other processes see the rename
 *   at once, which is all garbage collection needs, and after a crash its process is gone, so the
 *   lease protects nothing whether or not it reached the disk (a torn file reads as expired).
 *   Detached leases, meant to outlive their process, are written durably.
 */
import { randomBytes } from 'node:crypto';
import { promises as fsp, rmSync } from 'node:fs';
import { join } from 'node:path';
import { isDigest, type Digest } from '../oci/digest.js';
import { isErrno, tempName, writeFileAtomic } from '../oci/layout/fs.js';
import type { StoreLock } from './lock.js';
import { currentHost, currentOwner, isAlive, ownerTag } from './owner.js';

export interface LeaseRecord {
  id: string;
  label?: string;
  /** Owning process; absent for detached leases. */
  pid?: number;
  start?: string;
  hostname?: string;
  created: string;
  /** ISO time after which the lease is void, whatever its process. */
  expires?: string;
  digests: Digest[];
}

export interface CreateLeaseOptions {
  label?: string;
  /** The lease lapses after this many milliseconds. */
  expiresInMs?: number;
  /** Not bound to this process (requires `expiresInMs`, so it cannot pin content forever by accident). */
  detached?: boolean;
  /** Digests to pin from the start. */
  digests?: Digest[];
}

/** Whether a lease no longer protects anything. */
export function leaseExpired(rec: LeaseRecord, now = Date.now()): boolean {
  if (rec.expires !== undefined && Date.parse(rec.expires) <= now) return true;
  if (rec.pid === undefined) return rec.expires === undefined;
  // A lease from another machine sharing the store cannot be checked by pid; only `expires` ends it.
  if (rec.hostname !== undefined && rec.hostname !== currentHost()) return false;
  return !isAlive({ pid: rec.pid, start: rec.start });
}

const active = new Set<string>();
let exitHookInstalled = false;

/** Drops this process's lease files on a normal exit (a SIGKILL leaves them for the pid check). */
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.once('exit', () => {
    for (const path of active) rmSync(path, { force: true });
  });
}

export class Lease {
  private readonly set: Set<Digest>;
  /** The write that will list every digest added so far: the queued one, else the last one. */
  private latest: Promise<void> = Promise.resolve();
  /** A write waiting for the lock; additions made before it starts are written by it. */
  private queued: Promise<void> | undefined;
  /** Whether a lease file may exist (a write has started). */
  private onDisk = false;
  private released = false;

  constructor(
    private readonly dir: string,
    private readonly tmpDir: string,
    private readonly lock: StoreLock,
    private readonly record: LeaseRecord,
  ) {
    this.set = new Set(record.digests);
  }

  get id(): string {
    return this.record.id;
  }
  get path(): string {
    return join(this.dir, `${this.record.id}.json`);
  }
  get digests(): ReadonlySet<Digest> {
    return this.set;
  }
  has(digest: Digest): boolean {
    return this.set.has(digest);
  }

  /**
   * Pins digests. Returns once the lease file lists them, so content written afterwards is safe
   * from any garbage collection that starts later.
   */
  add(...digests: Digest[]): Promise<void> {
    if (this.released) return Promise.reject(new Error(`lease ${this.id} used after release`));
    let fresh = false;
    for (const d of digests) {
      if (this.set.has(d)) continue;
      this.set.add(d);
      fresh = true;
    }
    // Known digests are in the file already, or in a write under way: wait for that one.
    if (!fresh) return this.latest;
    if (this.queued) return this.queued;
    const previous = this.latest;
    const write = previous
      .catch(() => undefined)
      .then(() =>
        this.lock.run(() => {
          // From here on, additions need a write of their own: this one's list is taken now.
          if (this.queued === write) this.queued = undefined;
          return this.persist();
        }),
      );
    this.queued = write;
    this.latest = write;
    return write;
  }

  /**
   * Writes the lease file with every digest added so far (the caller holds the store lock, or the
   * lease is new). Only a detached lease is synced to disk; see the module comment.
   */
  async persist(): Promise<void> {
    if (this.released) return;
    this.record.digests = [...this.set];
    this.onDisk = true;
    const data = JSON.stringify(this.record);
    if (this.record.pid === undefined) {
      await writeFileAtomic(this.path, data, { tmpDir: this.tmpDir, tempPrefix: ownerTag() });
      return;
    }
    await replaceVisibly(this.path, data, this.tmpDir);
  }

  /** Ends the lease: its content is collectable again unless something else references it. */
  async release(): Promise<void> {
    if (this.released) return;
    this.released = true;
    await this.latest.catch(() => undefined);
    active.delete(this.path);
    if (this.onDisk) await fsp.rm(this.path, { force: true });
  }
}

/**
 * Replaces `path` by rename from a temp file in `tmpDir`: readers see the old file or the whole new
 * one, never a part. Nothing is synced (see the module comment for why a process lease need not be).
 */
async function replaceVisibly(path: string, data: string, tmpDir: string): Promise<void> {
  const tmp = join(tmpDir, tempName(ownerTag(), '.tmp'));
  try {
    try {
      await fsp.writeFile(tmp, data, { flag: 'wx', mode: 0o644 });
    } catch (err) {
      if (!isErrno(err, 'ENOENT')) throw err;
      await fsp.mkdir(tmpDir, { recursive: true });
      await fsp.writeFile(tmp, data, { flag: 'wx', mode: 0o644 });
    }
    await fsp.rename(tmp, path);
  } catch (err) {
    await fsp.rm(tmp, { force: true });
    throw err;
  }
}

export async function createLease(dir: string, tmpDir: string, lock: StoreLock, opts: CreateLeaseOptions = {}): Promise<Lease> {
  const owner = currentOwner();
  const rec: LeaseRecord = {
    id: `${Date.now().toString(36)}-${randomBytes(6).toString('hex')}`,
    created: new Date().toISOString(),
    digests: [],
  };
  if (opts.label !== undefined) rec.label = opts.label;
  if (opts.detached) {
    if (opts.expiresInMs === undefined) throw new Error('a detached lease needs expiresInMs');
  } else {
    rec.pid = owner.pid;
    if (owner.start !== undefined) rec.start = owner.start;
    rec.hostname = currentHost();
  }
  if (opts.expiresInMs !== undefined) rec.expires = new Date(Date.now() + opts.expiresInMs).toISOString();
  const lease = new Lease(dir, tmpDir, lock, rec);
  if (!opts.detached) {
    active.add(lease.path);
    installExitHook();
  }
  // An empty lease protects nothing: its file is written with its first digests, under the lock
  // like every addition, since that orders it against garbage collection.
  if (opts.digests?.length) await lease.add(...opts.digests);
  return lease;
}

/** Every lease file, parsed (unreadable ones are reported with `digests: []` and no owner). */
export async function readLeases(dir: string): Promise<LeaseRecord[]> {
  let names: string[];
  try {
    names = await fsp.readdir(dir);
  } catch {
    return [];
  }
  const out: LeaseRecord[] = [];
  for (const name of names) {
    if (!name.endsWith('.json')) continue;
    try {
      const rec = JSON.parse(await fsp.readFile(join(dir, name), 'utf8')) as LeaseRecord;
      rec.digests = Array.isArray(rec.digests) ? rec.digests.filter(isDigest) : [];
      rec.id = name.slice(0, -'.json'.length);
      out.push(rec);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue;
      // Lease files are replaced by rename, so a parse failure is real damage: keep it visible and
      // let it expire like a process lease of unknown origin (it protects nothing).
      out.push({ id: name.slice(0, -'.json'.length), created: new Date(0).toISOString(), digests: [] });
    }
  }
  return out;
}
