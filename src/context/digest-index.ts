/**
 * The persistent stat cache of a build context: what a file's checksum was, remembered by the file's
 * identity and metadata, so a rebuild re-reads only files whose metadata changed (git's index idea).
 *
 * An entry is keyed by (device, inode) and trusted only when size, mode, and modification and
 * change times (nanoseconds) all still match. Any write changes mtime; restoring mtime afterwards
 * (touch -r, tar, rsync -t) still changes ctime, which user space cannot set; a chmod or an xattr
 * change (both part of the checksum) changes ctime too.
 *
 * Racy entries: timestamps have a granularity, so a file written again within the same tick as it
 * was hashed keeps its metadata while its content changed. Like git, each entry remembers when it
 * was hashed, and an entry whose mtime or ctime is not clearly older than that is re-hashed next
 * time instead of trusted (once the file has been quiet for a moment, the next hash sticks).
 *
 * The file is binary: a header, fixed-size records, and a SHA-256 of everything before it, so a
 * torn or damaged file is recognised as a whole. It is replaced atomically (temporary file +
 * rename) so readers never see a partial write. It is only a cache: a missing, corrupt or foreign
 * file reads as empty, and concurrent writers merge what is on disk into what they write, so the
 * worst a race does is lose a few entries, which are then hashed again.
 *
 * Layout (little-endian): magic `KILNCIX1`; u32 length + UTF-8 algorithm name; u32 length + UTF-8
 * context root; f64 write time (ms); u32 record count; records of 88 bytes (u64 dev, u64 ino,
 * u64 size, u32 mode, u32 zero, i64 mtime ns, i64 ctime ns, f64 hashed-at ms, 32-byte SHA-256);
 * 32-byte SHA-256 of all the preceding bytes.
 *
 * Loading is cheap because a no-op build looks up every file of a big context: records stay in the
 * loaded buffer, found through a map from (device, inode) to their offset, and are decoded only
 * when looked up; the file is rewritten only when something new was hashed.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import type { Digest } from '../oci/digest.js';
import type { FileStamp } from './hasher.js';
import type { StatLike } from './scan.js';

const MAGIC = Buffer.from('KILNCIX1', 'latin1');
/** Names the checksum definition; entries made under another definition must not be reused. */
const ALGORITHM = 'buildkit-contenthash-tarsum-v1+uid0';
const RECORD_BYTES = 88;
const TWO_32 = 2 ** 32;

/**
 * How much older than the hashing time a timestamp must be to be trusted. Linux stamps files from
 * a clock that lags the real time by up to one scheduler tick (10 ms at HZ=100); file systems that
 * store whole seconds (or FAT's two) need the larger margin, recognised by a ctime with no
 * fractional part.
 */
const RACY_MARGIN_NS = 20_000_000n;
const COARSE_RACY_MARGIN_NS = 2_000_000_000n;
const RACY_MARGIN_NS_NUM = Number(RACY_MARGIN_NS);
const COARSE_RACY_MARGIN_NS_NUM = Number(COARSE_RACY_MARGIN_NS);

interface Entry {
  readonly dev: bigint;
  readonly ino: bigint;
  readonly size: bigint;
  readonly mode: bigint;
  readonly mtimeNs: bigint;
  readonly ctimeNs: bigint;
  /** Wall-clock milliseconds taken before the file's metadata was read for hashing. */
  readonly hashedAtMs: number;
  /** The SHA-256 itself (32 bytes). */
  readonly sum: Buffer;
}

/**
 * Records of a loaded file: the buffer, and where each record is. Most are found by inode alone
 * (a number key costs no string per file; the device is checked in the record); a record whose
 * inode is too big for that, or shared with another device's, is found by its full key.
 */
interface Loaded {
  readonly buf: Buffer;
  readonly byIno: Map<number, number>;
  readonly byKey: Map<string, number>;
}

function emptyLoaded(): Loaded {
  return { buf: Buffer.alloc(0), byIno: new Map(), byKey: new Map() };
}

/** An unsigned 64-bit field as a number, or -1 when it does not fit 53 bits. */
function u64(buf: Buffer, off: number): number {
  const hi = buf.readUInt32LE(off + 4);
  return hi < 0x200000 ? hi * TWO_32 + buf.readUInt32LE(off) : -1;
}

/** Indexes the `count` records starting at `off` in `body`. */
function indexRecords(body: Buffer, off: number, count: number): Loaded {
  const byIno = new Map<number, number>();
  const byKey = new Map<string, number>();
  for (let i = 0; i < count; i++, off += RECORD_BYTES) {
    const ino = u64(body, off + 8);
    if (ino >= 0 && !byIno.has(ino)) byIno.set(ino, off);
    else byKey.set(`${u64Text(body, off)}:${u64Text(body, off + 8)}`, off);
  }
  return { buf: body, byIno, byKey };
}

/** Offset of the record for (dev, ino) given as numbers, if loaded. */
function offsetOf(l: Loaded, dev: number, ino: number): number | undefined {
  const off = l.byIno.get(ino);
  if (off !== undefined && u64(l.buf, off) === dev) return off;
  return l.byKey.size > 0 ? l.byKey.get(`${dev}:${ino}`) : undefined;
}

/** Offset of the record under a full key (`dev:ino`), if loaded. */
function offsetOfKey(l: Loaded, key: string): number | undefined {
  const colon = key.indexOf(':');
  const dev = Number(key.slice(0, colon));
  const ino = Number(key.slice(colon + 1));
  if (Number.isSafeInteger(dev) && Number.isSafeInteger(ino)) return offsetOf(l, dev, ino);
  return l.byKey.get(key);
}

/** Every loaded record as (key, offset). */
function* loadedRecords(l: Loaded): Generator<[string, number]> {
  for (const off of l.byIno.values()) yield [`${u64Text(l.buf, off)}:${u64Text(l.buf, off + 8)}`, off];
  yield* l.byKey;
}

/** Seconds and nanoseconds of the time {@link splitStoredNs} read last. */
let storedSec = 0;
let storedNsec = 0;

/**
 * Splits a non-negative nanosecond time stored as an i64 at `off` into whole seconds and
 * nanoseconds (in `storedSec`, `storedNsec`) without bigints: the value is taken apart in pieces
 * that stay exact in doubles. False (nothing set) for a negative time.
 */
function splitStoredNs(buf: Buffer, off: number): boolean {
  const hi = buf.readInt32LE(off + 4);
  if (hi < 0) return false;
  const lo = buf.readUInt32LE(off);
  const hiH = Math.floor(hi / 65536);
  const hiL = hi % 65536;
  // 2^48 = 281474·10^9 + 976710656 and 2^32 = 4·10^9 + 294967296; the remainder stays below 2^53.
  const rest = hiH * 976710656 + hiL * 294967296 + lo;
  storedSec = hiH * 281474 + hiL * 4 + Math.floor(rest / 1e9);
  storedNsec = rest % 1e9;
  return true;
}

/** Seconds and nanoseconds as Node's millisecond `Stats` time (the arithmetic of {@link nsToMs}). */
function secNsToMs(sec: number, nsec: number): number {
  return sec * 1e3 + nsec / 1e6;
}

/**
 * {@link isRacy} for times given as seconds and nanoseconds. The difference from the threshold is
 * exact near zero, where the answer depends on it, and far from zero only its sign matters.
 */
function isRacySplit(mSec: number, mNsec: number, cSec: number, cNsec: number, hashedAtMs: number): boolean {
  const margin = cNsec === 0 ? COARSE_RACY_MARGIN_NS_NUM : RACY_MARGIN_NS_NUM;
  const newer = mSec > cSec || (mSec === cSec && mNsec > cNsec);
  const sec = newer ? mSec : cSec;
  const nsec = newer ? mNsec : cNsec;
  const hashedMs = Math.floor(hashedAtMs);
  const tSec = Math.floor(hashedMs / 1000);
  const tNsec = (hashedMs - tSec * 1000) * 1e6;
  return (sec - tSec) * 1e9 + (nsec - tNsec) + margin >= 0;
}

/**
 * The map key of a file: device and inode in decimal (`dev:ino`), the same whether they come as
 * numbers from an ordinary stat or as bigints from a full-precision one.
 */
export function stampKey(s: { dev: bigint | number; ino: bigint | number }): string {
  return `${s.dev}:${s.ino}`;
}

/** An unsigned 64-bit field as a decimal string (exact, without a bigint when it fits 53 bits). */
function u64Text(buf: Buffer, off: number): string {
  const hi = buf.readUInt32LE(off + 4);
  if (hi < 0x200000) return String(hi * TWO_32 + buf.readUInt32LE(off));
  return buf.readBigUInt64LE(off).toString();
}

/** Reads an index file; anything unreadable, foreign or damaged yields no records. */
function readRecords(file: string): Loaded {
  const none = emptyLoaded();
  let buf: Buffer;
  try {
    buf = readFileSync(file);
  } catch {
    return none;
  }
  try {
    if (buf.length < MAGIC.length + 32 || !buf.subarray(0, MAGIC.length).equals(MAGIC)) return none;
    const body = buf.subarray(0, buf.length - 32);
    if (!createHash('sha256').update(body).digest().equals(buf.subarray(buf.length - 32))) return none;
    let off = MAGIC.length;
    const str = (): string => {
      const n = body.readUInt32LE(off);
      const s = body.toString('utf8', off + 4, off + 4 + n);
      off += 4 + n;
      return s;
    };
    if (str() !== ALGORITHM) return none;
    str(); // root
    off += 8; // written at
    const count = body.readUInt32LE(off);
    off += 4;
    if (body.length - off !== count * RECORD_BYTES) return none;
    return indexRecords(body, off, count);
  } catch {
    return none;
  }
}

function decode(buf: Buffer, off: number): Entry {
  return {
    dev: buf.readBigUInt64LE(off),
    ino: buf.readBigUInt64LE(off + 8),
    size: buf.readBigUInt64LE(off + 16),
    mode: BigInt(buf.readUInt32LE(off + 24)),
    mtimeNs: buf.readBigInt64LE(off + 32),
    ctimeNs: buf.readBigInt64LE(off + 40),
    hashedAtMs: buf.readDoubleLE(off + 48),
    sum: Buffer.from(buf.subarray(off + 56, off + 88)),
  };
}

/** A record to write: one decoded, or one still in a loaded buffer (copied as it is). */
type Source = Entry | { readonly buf: Buffer; readonly off: number };

function encode(root: string, records: readonly Source[]): Buffer {
  const alg = Buffer.from(ALGORITHM, 'utf8');
  const rootBytes = Buffer.from(root, 'utf8');
  const headerLen = MAGIC.length + 4 + alg.length + 4 + rootBytes.length + 8 + 4;
  const buf = Buffer.alloc(headerLen + records.length * RECORD_BYTES + 32);
  let off = MAGIC.copy(buf, 0);
  off = buf.writeUInt32LE(alg.length, off);
  off += alg.copy(buf, off);
  off = buf.writeUInt32LE(rootBytes.length, off);
  off += rootBytes.copy(buf, off);
  off = buf.writeDoubleLE(Date.now(), off);
  off = buf.writeUInt32LE(records.length, off);
  for (const r of records) {
    if ('off' in r) {
      r.buf.copy(buf, off, r.off, r.off + RECORD_BYTES);
    } else {
      buf.writeBigUInt64LE(r.dev, off);
      buf.writeBigUInt64LE(r.ino, off + 8);
      buf.writeBigUInt64LE(r.size, off + 16);
      buf.writeUInt32LE(Number(r.mode), off + 24);
      buf.writeBigInt64LE(r.mtimeNs, off + 32);
      buf.writeBigInt64LE(r.ctimeNs, off + 40);
      buf.writeDoubleLE(r.hashedAtMs, off + 48);
      r.sum.copy(buf, off + 56);
    }
    off += RECORD_BYTES;
  }
  createHash('sha256').update(buf.subarray(0, off)).digest().copy(buf, off);
  return buf;
}

export class DigestIndex {
  /** Entries recorded in this session (they win over whatever another writer put on disk meanwhile). */
  private readonly fresh = new Map<string, Entry>();
  private dirty = false;

  private constructor(
    readonly file: string,
    private readonly root: string,
    private loaded: Loaded,
  ) {}

  /** Loads the index at `file` (tolerating its absence or corruption). */
  static async open(file: string, root: string): Promise<DigestIndex> {
    return new DigestIndex(file, root, readRecords(file));
  }

  get size(): number {
    let n = this.loaded.byIno.size + this.loaded.byKey.size;
    for (const k of this.fresh.keys()) if (offsetOfKey(this.loaded, k) === undefined) n++;
    return n;
  }

  /** Whether entries were recorded since the last save. */
  get isDirty(): boolean {
    return this.dirty;
  }

  private entry(key: string): Entry | undefined {
    const e = this.fresh.get(key);
    if (e) return e;
    const off = offsetOfKey(this.loaded, key);
    return off === undefined ? undefined : decode(this.loaded.buf, off);
  }

  /** The remembered digest of the file with this exact metadata, if it can be trusted. */
  lookup(stamp: FileStamp): Digest | undefined {
    const e = this.entry(stampKey(stamp));
    if (!e) return undefined;
    if (e.dev !== stamp.dev || e.ino !== stamp.ino || e.size !== stamp.size || e.mode !== stamp.mode) return undefined;
    if (e.mtimeNs !== stamp.mtimeNs || e.ctimeNs !== stamp.ctimeNs || isRacy(e.mtimeNs, e.ctimeNs, e.hashedAtMs)) return undefined;
    return `sha256:${e.sum.toString('hex')}`;
  }

  /**
   * The same lookup from an ordinary (double precision) `lstat`, which a directory walk has at
   * hand anyway. Times are compared in Node's millisecond form, which resolves a fraction of a
   * microsecond: a trusted entry's times are at least the racy margin older than its hashing, so
   * any later change moves them by far more than that. Returns undefined (ask again with full
   * precision) when a number is too big to compare exactly. Reads the record in place: a no-op
   * build makes this call for every file of the context.
   */
  lookupStats(st: StatLike): Digest | undefined {
    if (!Number.isSafeInteger(st.dev) || !Number.isSafeInteger(st.ino) || !Number.isSafeInteger(st.size)) return undefined;
    if (this.fresh.size > 0) {
      const e = this.fresh.get(stampKey(st));
      if (e) {
        if (Number(e.size) !== st.size || Number(e.mode) !== st.mode) return undefined;
        if (nsToMs(e.mtimeNs) !== st.mtimeMs || nsToMs(e.ctimeNs) !== st.ctimeMs || isRacy(e.mtimeNs, e.ctimeNs, e.hashedAtMs)) return undefined;
        return `sha256:${e.sum.toString('hex')}`;
      }
    }
    const off = offsetOf(this.loaded, st.dev, st.ino);
    if (off === undefined) return undefined;
    const buf = this.loaded.buf;
    if (u64(buf, off + 16) !== st.size || buf.readUInt32LE(off + 24) !== st.mode) return undefined;
    if (!splitStoredNs(buf, off + 32)) return this.lookupDecoded(buf, off, st);
    const mSec = storedSec;
    const mNsec = storedNsec;
    if (!splitStoredNs(buf, off + 40)) return this.lookupDecoded(buf, off, st);
    const cSec = storedSec;
    const cNsec = storedNsec;
    if (secNsToMs(mSec, mNsec) !== st.mtimeMs || secNsToMs(cSec, cNsec) !== st.ctimeMs) return undefined;
    if (isRacySplit(mSec, mNsec, cSec, cNsec, buf.readDoubleLE(off + 48))) return undefined;
    return `sha256:${buf.toString('hex', off + 56, off + 88)}`;
  }

  /** {@link lookupStats} of a record with times before 1970, through bigints. */
  private lookupDecoded(buf: Buffer, off: number, st: StatLike): Digest | undefined {
    const e = decode(buf, off);
    if (nsToMs(e.mtimeNs) !== st.mtimeMs || nsToMs(e.ctimeNs) !== st.ctimeMs || isRacy(e.mtimeNs, e.ctimeNs, e.hashedAtMs)) return undefined;
    return `sha256:${e.sum.toString('hex')}`;
  }

  /** Remembers the digest of a file read while it had metadata `stamp`; `hashedAtMs` precedes that read. */
  record(stamp: FileStamp, digest: Digest, hashedAtMs: number): void {
    this.fresh.set(stampKey(stamp), {
      dev: stamp.dev,
      ino: stamp.ino,
      size: stamp.size,
      mode: stamp.mode,
      mtimeNs: stamp.mtimeNs,
      ctimeNs: stamp.ctimeNs,
      hashedAtMs,
      sum: Buffer.from(digest.slice(7), 'hex'),
    });
    this.dirty = true;
  }

  /**
   * Writes the index if anything was recorded: what is on disk now (another process may have
   * written since we loaded) merged with ours, restricted to `live` keys (files that are still in
   * the context), then an atomic replace. Unchanged records are copied as they are.
   */
  async save(live: ReadonlySet<string>): Promise<void> {
    if (!this.dirty) return;
    this.dirty = false;
    try {
      const disk = readRecords(this.file);
      const records: Source[] = [];
      const taken = new Set<string>();
      for (const [k, e] of this.fresh) {
        if (!live.has(k)) continue;
        records.push(e);
        taken.add(k);
      }
      for (const [k, off] of loadedRecords(disk)) {
        if (!live.has(k) || taken.has(k)) continue;
        records.push({ buf: disk.buf, off });
        taken.add(k);
      }
      // What we loaded and another writer dropped meanwhile is still good if its file is live.
      for (const [k, off] of loadedRecords(this.loaded)) {
        if (!live.has(k) || taken.has(k)) continue;
        records.push({ buf: this.loaded.buf, off });
        taken.add(k);
      }
      mkdirSync(dirname(this.file), { recursive: true });
      const tmp = `${this.file}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`;
      const bytes = encode(this.root, records);
      try {
        writeFileSync(tmp, bytes);
        renameSync(tmp, this.file);
      } catch (err) {
        rmSync(tmp, { force: true });
        throw err;
      }
      // What is on disk now is what we hold: later lookups and saves start from it.
      this.loaded = readLoadedFrom(bytes);
      this.fresh.clear();
    } catch (err) {
      this.dirty = true;
      throw err;
    }
  }
}

/** The records of an encoded index held in memory (as just written). */
function readLoadedFrom(bytes: Buffer): Loaded {
  const body = bytes.subarray(0, bytes.length - 32);
  let off = MAGIC.length;
  off += 4 + body.readUInt32LE(off);
  off += 4 + body.readUInt32LE(off);
  off += 8;
  const count = body.readUInt32LE(off);
  return indexRecords(body, off + 4, count);
}

/** A nanosecond time as Node's `Stats` gives it in milliseconds (seconds × 1000 + nanoseconds ÷ 10⁶). */
export function nsToMs(ns: bigint): number {
  return Number(ns / 1_000_000_000n) * 1e3 + Number(ns % 1_000_000_000n) / 1e6;
}

/** Whether the file could have changed after it was hashed without its metadata showing it. */
function isRacy(mtimeNs: bigint, ctimeNs: bigint, hashedAtMs: number): boolean {
  const coarse = ctimeNs % 1_000_000_000n === 0n;
  const margin = coarse ? COARSE_RACY_MARGIN_NS : RACY_MARGIN_NS;
  const newest = mtimeNs > ctimeNs ? mtimeNs : ctimeNs;
  return newest >= BigInt(Math.floor(hashedAtMs)) * 1_000_000n - margin;
}
