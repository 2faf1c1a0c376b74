/**
 * Reading and hashing file contents: on the main thread for a handful of files, in a pool of worker
 * threads for big trees. SHA-256 is CPU-bound and Node's hash runs on the calling thread, so only
 * threads use more than one core; the worker side is synchronous (open, read in 1 MiB chunks,
 * hash, close), which for small files costs far less than the several thread-pool round trips of
 * the asynchronous API, and messages carry batches so their overhead is paid per batch, not per file.
 *
 * Every read also reports the file's metadata before and after, so the caller can tell a stable
 * read from one that raced with a writer.
 */
import { constants, type BigIntStats } from 'node:fs';
import { open } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import { createRequire } from 'node:module';
import { availableParallelism } from 'node:os';
import type { Worker } from 'node:worker_threads';
import type { Digest } from '../oci/digest.js';
import { XATTR_RULE } from './checksum.js';

/** What identifies one version of a file's content and metadata, at full precision. */
export interface FileStamp {
  readonly dev: bigint;
  readonly ino: bigint;
  readonly mode: bigint;
  readonly size: bigint;
  readonly mtimeNs: bigint;
  readonly ctimeNs: bigint;
}

export function stampOf(st: BigIntStats): FileStamp {
  return { dev: st.dev, ino: st.ino, mode: st.mode, size: st.size, mtimeNs: st.mtimeNs, ctimeNs: st.ctimeNs };
}

export function sameStamp(a: FileStamp, b: FileStamp): boolean {
  return (
    a.dev === b.dev &&
    a.ino === b.ino &&
    a.mode === b.mode &&
    a.size === b.size &&
    a.mtimeNs === b.mtimeNs &&
    a.ctimeNs === b.ctimeNs
  );
}

export interface HashJob {
  /** Absolute path of a regular file. */
  readonly abs: string;
  /** Bytes hashed before the content (the tarsum header). */
  readonly header: Uint8Array;
  /** Expected size, used only to size batches. */
  readonly size: bigint;
  /**
   * The header was built assuming the file has no xattrs that enter the checksum: check that it
   * has none (while the file is open, so the metadata comparison covers it) and answer `xattrs`
   * instead of hashing if it has some.
   */
  readonly assumeNoXattrs?: boolean;
}

export type HashOutcome =
  | { readonly kind: 'ok'; readonly digest: Digest; readonly before: FileStamp; readonly after: FileStamp }
  /** The path no longer names a regular file (replaced by something else, or removed). */
  | { readonly kind: 'changed' }
  /** The file has hashed xattrs after all: build the header with them and ask again. */
  | { readonly kind: 'xattrs' }
  | { readonly kind: 'error'; readonly code: string | undefined; readonly message: string };

/** `O_NONBLOCK` keeps a FIFO swapped in for the file from blocking the open; O_NOFOLLOW a symlink from being followed. */
const OPEN_FLAGS = constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK;
const S_IFMT = 0o170000n;
const S_IFREG = 0o100000n;
/** Errors meaning "this is no longer the file we listed": the caller re-examines it. */
const VANISHED = ['ENOENT', 'ENOTDIR', 'ELOOP', 'ENXIO'];

const INLINE_CHUNK = 256 * 1024;

/** Hashes one file on the main thread (asynchronous I/O); the header must already carry the xattrs. */
export async function hashInline(job: HashJob): Promise<HashOutcome> {
  let fh;
  try {
    fh = await open(job.abs, OPEN_FLAGS);
  } catch (err) {
    return failure(err);
  }
  try {
    const before = stampOf(await fh.stat({ bigint: true }));
    if ((before.mode & S_IFMT) !== S_IFREG) return { kind: 'changed' };
    const h = createHash('sha256').update(job.header);
    const buf = Buffer.allocUnsafe(Number(before.size < BigInt(INLINE_CHUNK) ? before.size + 1n : BigInt(INLINE_CHUNK)));
    for (;;) {
      const { bytesRead } = await fh.read(buf, 0, buf.length, null);
      if (bytesRead === 0) break;
      h.update(buf.subarray(0, bytesRead));
    }
    const after = stampOf(await fh.stat({ bigint: true }));
    return { kind: 'ok', digest: `sha256:${h.digest('hex')}`, before, after };
  } catch (err) {
    return failure(err);
  } finally {
    await fh.close().catch(() => undefined);
  }
}

function failure(err: unknown): HashOutcome {
  const code = (err as NodeJS.ErrnoException).code;
  if (code !== undefined && VANISHED.includes(code)) return { kind: 'changed' };
  return { kind: 'error', code, message: (err as Error).message };
}

/**
 * The worker's program. It is evaluated as CommonJS from a string so that it runs the same under
 * tsx, vitest and the compiled package without a separate entry file or a loader. Listing xattrs
 * here keeps one system call per file off the main thread; their values (rare) are read there.
 */
function workerSource(xattrModule: string): string {
  return `
'use strict';
const { parentPort } = require('node:worker_threads');
const fs = require('node:fs');
const { createHash } = require('node:crypto');
const { listAttributesSync } = require(${JSON.stringify(xattrModule)});
const FLAGS = ${OPEN_FLAGS};
const VANISHED = new Set(${JSON.stringify(VANISHED)});
const RULE = ${JSON.stringify(XATTR_RULE)};
const hashed = (name) => RULE.keep.includes(name) || !RULE.skipPrefixes.some((p) => name.startsWith(p));
const buf = Buffer.allocUnsafe(1 << 20);
function hasHashedXattrs(path) {
  try {
    return listAttributesSync(path).some(hashed);
  } catch (err) {
    if (/os error (95|2|20)\\b/.test(String(err && err.message))) return false; // unsupported; vanished shows in the stat
    throw err;
  }
}
function put(stamps, at, st) {
  stamps[at] = st.dev; stamps[at + 1] = st.ino; stamps[at + 2] = st.mode;
  stamps[at + 3] = st.size; stamps[at + 4] = st.mtimeNs; stamps[at + 5] = st.ctimeNs;
}
function hashOne(msg, i, out) {
  const path = msg.paths[i];
  let fd = -1;
  try {
    fd = fs.openSync(path, FLAGS);
    const before = fs.fstatSync(fd, { bigint: true });
    if ((before.mode & 0o170000n) !== 0o100000n) return ${STATUS.changed};
    if (msg.probe[i] && hasHashedXattrs(path)) return ${STATUS.xattrs};
    const h = createHash('sha256');
    h.update(msg.headers.subarray(i === 0 ? 0 : msg.ends[i - 1], msg.ends[i]));
    for (;;) {
      const n = fs.readSync(fd, buf, 0, buf.length, null);
      if (n === 0) break;
      h.update(buf.subarray(0, n));
    }
    const after = fs.fstatSync(fd, { bigint: true });
    put(out.stamps, i * 12, before);
    put(out.stamps, i * 12 + 6, after);
    h.digest().copy(out.sums, i * 32);
    return ${STATUS.ok};
  } catch (err) {
    if (err && VANISHED.has(err.code)) return ${STATUS.changed};
    out.errors.push({ i, code: err && err.code, message: String(err && err.message) });
    return ${STATUS.error};
  } finally {
    if (fd >= 0) fs.closeSync(fd);
  }
}
parentPort.on('message', (msg) => {
  const n = msg.paths.length;
  const sums = new Uint8Array(n * 32);
  const out = { status: new Uint8Array(n), stamps: new BigInt64Array(n * 12), sums: Buffer.from(sums.buffer), errors: [] };
  for (let i = 0; i < n; i++) out.status[i] = hashOne(msg, i, out);
  parentPort.postMessage({ id: msg.id, status: out.status, stamps: out.stamps, sums, errors: out.errors }, [
    out.status.buffer, out.stamps.buffer, sums.buffer,
  ]);
});
`;
}

/** Per-file result codes of the worker protocol. */
const STATUS = { ok: 0, changed: 1, xattrs: 2, error: 3 } as const;

/**
 * A batch travels as flat arrays (paths, concatenated headers) and comes back as typed arrays
 * (status, twelve 64-bit stat fields and a 32-byte sum per file) moved rather than copied:
 * per-file objects on either side would cost more than the hashing of a small file.
 */
interface WireReply {
  id: number;
  status: Uint8Array;
  stamps: BigInt64Array;
  sums: Uint8Array;
  errors: Array<{ i: number; code: string | undefined; message: string }>;
}

function stampAt(a: BigInt64Array, at: number): FileStamp {
  const u = (x: bigint): bigint => BigInt.asUintN(64, x);
  return { dev: u(a[at]!), ino: u(a[at + 1]!), mode: u(a[at + 2]!), size: u(a[at + 3]!), mtimeNs: a[at + 4]!, ctimeNs: a[at + 5]! };
}

function outcomeAt(r: WireReply, i: number): HashOutcome {
  switch (r.status[i]) {
    case STATUS.ok:
      return {
        kind: 'ok',
        digest: `sha256:${Buffer.from(r.sums.buffer, r.sums.byteOffset + i * 32, 32).toString('hex')}`,
        before: stampAt(r.stamps, i * 12),
        after: stampAt(r.stamps, i * 12 + 6),
      };
    case STATUS.changed:
      return { kind: 'changed' };
    case STATUS.xattrs:
      return { kind: 'xattrs' };
    default: {
      const e = r.errors.find((x) => x.i === i);
      return { kind: 'error', code: e?.code, message: e?.message ?? 'unknown error' };
    }
  }
}

interface Pending {
  readonly job: HashJob;
  readonly resolve: (o: HashOutcome) => void;
  readonly reject: (e: unknown) => void;
}

interface Slot {
  readonly worker: Worker;
  readonly batches: Map<number, Pending[]>;
  dead: boolean;
}

/** A batch closes at this many files or this many bytes, whichever comes first. */
const BATCH_FILES = 64;
const BATCH_BYTES = 8n * 1024n * 1024n;
/** Batches queued per worker: one being hashed, one waiting, so a worker never idles between messages. */
const BATCHES_PER_WORKER = 2;

/**
 * A fixed set of hashing threads fed from one queue. At most `size × 2` batches are in flight;
 * the rest wait in the queue. Idle workers do not keep the process alive.
 */
export class HashPool {
  private readonly slots: Slot[] = [];
  /** Waiting jobs from `head` on (a moving head: shifting a long array is linear). */
  private readonly queue: Pending[] = [];
  private head = 0;
  private nextId = 0;
  private closed = false;
  private source: string | undefined;

  constructor(readonly size: number = Math.max(1, availableParallelism())) {}

  hash(job: HashJob): Promise<HashOutcome> {
    if (this.closed) return Promise.reject(new Error('hash pool is closed'));
    return new Promise<HashOutcome>((resolve, reject) => {
      this.queue.push({ job, resolve, reject });
      this.pump();
    });
  }

  private pump(): void {
    while (this.head < this.queue.length) {
      const slot = this.pickSlot();
      if (!slot) return;
      const batch: Pending[] = [];
      let bytes = 0n;
      while (this.head < this.queue.length && batch.length < BATCH_FILES && (batch.length === 0 || bytes < BATCH_BYTES)) {
        const p = this.queue[this.head++]!;
        batch.push(p);
        bytes += p.job.size;
      }
      if (this.head === this.queue.length) {
        this.queue.length = 0;
        this.head = 0;
      }
      const id = this.nextId++;
      slot.batches.set(id, batch);
      slot.worker.ref();
      const headers = Buffer.concat(batch.map((p) => p.job.header));
      const ends = new Uint32Array(batch.length);
      const probe = new Uint8Array(batch.length);
      let end = 0;
      batch.forEach((p, i) => {
        end += p.job.header.length;
        ends[i] = end;
        probe[i] = p.job.assumeNoXattrs ? 1 : 0;
      });
      const h = new Uint8Array(headers.buffer, headers.byteOffset, headers.length).slice();
      slot.worker.postMessage({ id, paths: batch.map((p) => p.job.abs), headers: h, ends, probe }, [h.buffer, ends.buffer, probe.buffer]);
    }
  }

  /** The least busy live worker with room for a batch, starting a new one while below `size`. */
  private pickSlot(): Slot | undefined {
    let best: Slot | undefined;
    for (const s of this.slots) {
      if (s.batches.size < BATCHES_PER_WORKER && (!best || s.batches.size < best.batches.size)) best = s;
    }
    if (best && best.batches.size === 0) return best;
    if (this.slots.length < this.size) return this.spawn();
    return best;
  }

  private spawn(): Slot {
    this.source ??= workerSource(createRequire(import.meta.url).resolve('@napi-rs/xattr'));
    // No inherited loaders or flags (tsx, inspector): the program is plain CommonJS.
    // Loaded with the first thread: a build whose context needs no hashing never loads it.
    const { Worker } = createRequire(import.meta.url)('node:worker_threads') as typeof import('node:worker_threads');
    const worker = new Worker(this.source, { eval: true, execArgv: [] });
    const slot: Slot = { worker, batches: new Map(), dead: false };
    const fail = (err: unknown): void => {
      if (slot.dead) return;
      slot.dead = true;
      this.slots.splice(this.slots.indexOf(slot), 1);
      for (const batch of slot.batches.values()) for (const p of batch) p.reject(err);
      slot.batches.clear();
      this.pump();
    };
    worker.on('message', (msg: WireReply) => {
      const batch = slot.batches.get(msg.id);
      if (!batch) return;
      slot.batches.delete(msg.id);
      if (slot.batches.size === 0) slot.worker.unref();
      batch.forEach((p, i) => p.resolve(outcomeAt(msg, i)));
      this.pump();
    });
    worker.on('error', fail);
    worker.on('exit', (code) => fail(new Error(`hashing worker exited with code ${code}`)));
    worker.unref();
    this.slots.push(slot);
    return slot;
  }

  /** Stops the workers; jobs still queued or running are rejected. */
  async close(): Promise<void> {
    this.closed = true;
    const err = new Error('hash pool closed');
    for (const p of this.queue.splice(0).slice(this.head)) p.reject(err);
    this.head = 0;
    await Promise.all(
      this.slots.splice(0).map(async (s) => {
        s.dead = true;
        for (const batch of s.batches.values()) for (const p of batch) p.reject(err);
        s.batches.clear();
        await s.worker.terminate();
      }),
    );
  }
}
