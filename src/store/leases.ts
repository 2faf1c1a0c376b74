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
 */
import { randomBytes } from 'node:crypto';
import { promises as fsp, rmSync } from 'node:fs';
import { join } from 'node:path';
import { isDigest, type Digest } from '../oci/digest.js';
import { writeFileAtomic } from '../oci/layout/fs.js';
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
  private writing: Promise<void> = Promise.resolve();
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
  async add(...digests: Digest[]): Promise<void> {
    if (this.released) throw new Error(`lease ${this.id} used after release`);
    const fresh = digests.filter((d) => !this.set.has(d));
    if (!fresh.length) return this.writing;
    for (const d of fresh) this.set.add(d);
    const write = this.writing.then(() => this.lock.run(() => this.persist()));
    this.writing = write.catch(() => undefined);
    return write;
  }

  /** Writes the lease file (the caller holds the store lock, or the lease is new). */
  async persist(): Promise<void> {
    if (this.released) return;
    this.record.digests = [...this.set];
    await writeFileAtomic(this.path, JSON.stringify(this.record), { tmpDir: this.tmpDir, tempPrefix: ownerTag() });
  }

  /** Ends the lease: its content is collectable again unless something else references it. */
  async release(): Promise<void> {
    if (this.released) return;
    this.released = true;
    await this.writing;
    active.delete(this.path);
    await fsp.rm(this.path, { force: true });
  }
}

export async function createLease(dir: string, tmpDir: string, lock: StoreLock, opts: CreateLeaseOptions = {}): Promise<Lease> {
  const owner = currentOwner();
  const rec: LeaseRecord = {
    id: `${Date.now().toString(36)}-${randomBytes(6).toString('hex')}`,
    created: new Date().toISOString(),
    digests: [...new Set(opts.digests ?? [])],
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
  // A new lease with digests must be ordered against garbage collection like any addition; an
  // empty one protects nothing yet and needs no lock.
  if (rec.digests.length) await lock.run(() => lease.persist());
  else await lease.persist();
  if (!opts.detached) {
    active.add(lease.path);
    installExitHook();
  }
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
