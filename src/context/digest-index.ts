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
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { Digest } from '../oci/digest.js';
import type { FileStamp } from './hasher.js';
import type { StatLike } from './scan.js';

const MAGIC = Buffer.from('KILNCIX1', 'latin1');
/** Names the checksum definition; entries made under another definition must not be reused. */
const ALGORITHM = 'buildkit-contenthash-tarsum-v1+uid0';
const RECORD_BYTES = 88;

/**
 * How much older than the hashing time a timestamp must be to be trusted. Linux stamps files from
 * a clock that lags the real time by up to one scheduler tick (10 ms at HZ=100); file systems that
 * store whole seconds (or FAT's two) need the larger margin, recognised by a ctime with no
 * fractional part.
 */
const RACY_MARGIN_NS = 20_000_000n;
const COARSE_RACY_MARGIN_NS = 2_000_000_000n;

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

/** The map key of a file: device and inode in one number. */
export function stampKey(s: { dev: bigint; ino: bigint }): bigint {
  return (s.dev << 64n) | s.ino;
}

/** Reads an index file; anything unreadable, foreign or damaged yields no entries. */
async function readEntries(file: string): Promise<Map<bigint, Entry>> {
  const out = new Map<bigint, Entry>();
  let buf: Buffer;
  try {
    buf = await readFile(file);
  } catch {
    return out;
  }
  try {
    if (buf.length < MAGIC.length + 32 || !buf.subarray(0, MAGIC.length).equals(MAGIC)) return out;
    const body = buf.subarray(0, buf.length - 32);
    if (!createHash('sha256').update(body).digest().equals(buf.subarray(buf.length - 32))) return out;
    let off = MAGIC.length;
    const str = (): string => {
      const n = body.readUInt32LE(off);
      const s = body.toString('utf8', off + 4, off + 4 + n);
      off += 4 + n;
      return s;
    };
    if (str() !== ALGORITHM) return out;
    str(); // root
    off += 8; // written at
    const count = body.readUInt32LE(off);
    off += 4;
    if (body.length - off !== count * RECORD_BYTES) return out;
    for (let i = 0; i < count; i++, off += RECORD_BYTES) {
      const e: Entry = {
        dev: body.readBigUInt64LE(off),
        ino: body.readBigUInt64LE(off + 8),
        size: body.readBigUInt64LE(off + 16),
        mode: BigInt(body.readUInt32LE(off + 24)),
        mtimeNs: body.readBigInt64LE(off + 32),
        ctimeNs: body.readBigInt64LE(off + 40),
        hashedAtMs: body.readDoubleLE(off + 48),
        sum: Buffer.from(body.subarray(off + 56, off + 88)),
      };
      out.set(stampKey(e), e);
    }
  } catch {
    out.clear();
  }
  return out;
}

function encode(root: string, entries: ReadonlyMap<bigint, Entry>): Buffer {
  const alg = Buffer.from(ALGORITHM, 'utf8');
  const rootBytes = Buffer.from(root, 'utf8');
  const headerLen = MAGIC.length + 4 + alg.length + 4 + rootBytes.length + 8 + 4;
  const buf = Buffer.alloc(headerLen + entries.size * RECORD_BYTES + 32);
  let off = MAGIC.copy(buf, 0);
  off = buf.writeUInt32LE(alg.length, off);
  off += alg.copy(buf, off);
  off = buf.writeUInt32LE(rootBytes.length, off);
  off += rootBytes.copy(buf, off);
  off = buf.writeDoubleLE(Date.now(), off);
  off = buf.writeUInt32LE(entries.size, off);
  for (const e of entries.values()) {
    buf.writeBigUInt64LE(e.dev, off);
    buf.writeBigUInt64LE(e.ino, off + 8);
    buf.writeBigUInt64LE(e.size, off + 16);
    buf.writeUInt32LE(Number(e.mode), off + 24);
    buf.writeBigInt64LE(e.mtimeNs, off + 32);
    buf.writeBigInt64LE(e.ctimeNs, off + 40);
    buf.writeDoubleLE(e.hashedAtMs, off + 48);
    e.sum.copy(buf, off + 56);
    off += RECORD_BYTES;
  }
  createHash('sha256').update(buf.subarray(0, off)).digest().copy(buf, off);
  return buf;
}

export class DigestIndex {
  /** Keys hashed in this session: they win over whatever another writer put on disk meanwhile. */
  private readonly fresh = new Set<bigint>();
  private dirty = false;

  private constructor(
    readonly file: string,
    private readonly root: string,
    private entries: Map<bigint, Entry>,
  ) {}

  /** Loads the index at `file` (tolerating its absence or corruption). */
  static async open(file: string, root: string): Promise<DigestIndex> {
    return new DigestIndex(file, root, await readEntries(file));
  }

  get size(): number {
    return this.entries.size;
  }

  /** Whether entries were recorded since the last save. */
  get isDirty(): boolean {
    return this.dirty;
  }

  /** The remembered digest of the file with this exact metadata, if it can be trusted. */
  lookup(stamp: FileStamp): Digest | undefined {
    const e = this.entries.get(stampKey(stamp));
    if (!e) return undefined;
    if (e.dev !== stamp.dev || e.ino !== stamp.ino || e.size !== stamp.size || e.mode !== stamp.mode) return undefined;
    if (e.mtimeNs !== stamp.mtimeNs || e.ctimeNs !== stamp.ctimeNs || isRacy(e)) return undefined;
    return `sha256:${e.sum.toString('hex')}`;
  }

  /**
   * The same lookup from an ordinary (double precision) `lstat`, which a directory walk has at
   * hand anyway. Times are compared in Node's millisecond form, which resolves a fraction of a
   * microsecond: a trusted entry's times are at least the racy margin older than its hashing, so
   * any later change moves them by far more than that. Returns undefined (ask again with full
   * precision) when a number is too big to compare exactly.
   */
  lookupStats(st: StatLike): Digest | undefined {
    if (!Number.isSafeInteger(st.dev) || !Number.isSafeInteger(st.ino) || !Number.isSafeInteger(st.size)) return undefined;
    const e = this.entries.get(stampKey({ dev: BigInt(st.dev), ino: BigInt(st.ino) }));
    if (!e || Number(e.size) !== st.size || Number(e.mode) !== st.mode) return undefined;
    if (nsToMs(e.mtimeNs) !== st.mtimeMs || nsToMs(e.ctimeNs) !== st.ctimeMs || isRacy(e)) return undefined;
    return `sha256:${e.sum.toString('hex')}`;
  }

  /** Remembers the digest of a file read while it had metadata `stamp`; `hashedAtMs` precedes that read. */
  record(stamp: FileStamp, digest: Digest, hashedAtMs: number): void {
    const key = stampKey(stamp);
    this.entries.set(key, {
      dev: stamp.dev,
      ino: stamp.ino,
      size: stamp.size,
      mode: stamp.mode,
      mtimeNs: stamp.mtimeNs,
      ctimeNs: stamp.ctimeNs,
      hashedAtMs,
      sum: Buffer.from(digest.slice(7), 'hex'),
    });
    this.fresh.add(key);
    this.dirty = true;
  }

  /**
   * Writes the index if anything was recorded: what is on disk now (another process may have
   * written since we loaded) merged with ours, restricted to `live` keys (files that are still in
   * the context), then an atomic replace.
   */
  async save(live: ReadonlySet<bigint>): Promise<void> {
    if (!this.dirty) return;
    this.dirty = false;
    const recorded = new Set(this.fresh);
    try {
      const disk = await readEntries(this.file);
      const merged = new Map<bigint, Entry>();
      for (const [k, e] of this.entries) if (live.has(k)) merged.set(k, e);
      for (const [k, e] of disk) if (live.has(k) && !this.fresh.has(k)) merged.set(k, e);
      this.entries = merged;
      await mkdir(dirname(this.file), { recursive: true });
      const tmp = `${this.file}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`;
      try {
        await writeFile(tmp, encode(this.root, merged));
        await rename(tmp, this.file);
      } catch (err) {
        await rm(tmp, { force: true }).catch(() => undefined);
        throw err;
      }
      for (const k of recorded) this.fresh.delete(k);
    } catch (err) {
      this.dirty = true;
      throw err;
    }
  }
}

/** A nanosecond time as Node's `Stats` gives it in milliseconds (seconds × 1000 + nanoseconds ÷ 10⁶). */
export function nsToMs(ns: bigint): number {
  return Number(ns / 1_000_000_000n) * 1e3 + Number(ns % 1_000_000_000n) / 1e6;
}

/** Whether the file could have changed after it was hashed without its metadata showing it. */
function isRacy(e: Entry): boolean {
  const coarse = e.ctimeNs % 1_000_000_000n === 0n;
  const margin = coarse ? COARSE_RACY_MARGIN_NS : RACY_MARGIN_NS;
  const newest = e.mtimeNs > e.ctimeNs ? e.mtimeNs : e.ctimeNs;
  return newest >= BigInt(Math.floor(e.hashedAtMs)) * 1_000_000n - margin;
}
