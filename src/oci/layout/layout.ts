/**
 * An OCI image layout on disk (image-spec `image-layout.md`): `oci-layout`, `index.json` and
 * `blobs/sha256/<hex>`. Reading verifies every blob against its digest and size while streaming;
 * writing publishes only complete, verified blobs and replaces index.json atomically.
 *
 * This module knows nothing about locks or garbage collection: callers that share a layout between
 * processes (the store) serialize index updates themselves. Blob writes need no coordination, since
 * two writers of one digest produce the same bytes and the first to publish wins.
 */
import { createReadStream, createWriteStream, promises as fsp } from 'node:fs';
import { join, resolve } from 'node:path';
import { Readable, Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { DigestingStream, digestHex, isDigest, type Digest } from '../digest.js';
import { MediaType } from '../mediatypes.js';
import { Annotation, type Descriptor, type Index } from '../types.js';
import { BlobNotFoundError, BlobVerificationError, LayoutError } from './errors.js';
import { fsyncDir, hexNamesIn, isErrno, publishNoReplace, statOrUndefined, tempName, writeFileAtomic } from './fs.js';
import { VerifyingStream, chain, readAll } from './verify.js';

export const LAYOUT_VERSION = '1.0.0';

export interface OpenLayoutOptions {
  /** Create the directory, `oci-layout` and an empty `index.json` when missing (default false). */
  create?: boolean;
  /**
   * Where temp files live while blobs and index.json are written; it must be on the layout's
   * filesystem so the final rename is atomic. Default: `<layout>/.tmp`.
   */
  tmpDir?: string;
  /** Prefix of temp file names, so a cleaner can tell which process owns one. Default: the pid. */
  tempPrefix?: string;
}

export type BlobSource = Readable | Buffer | Uint8Array | string | AsyncIterable<Uint8Array>;

export interface WriteBlobOptions {
  /** The digest (and size) the content must have; a mismatch is refused and leaves nothing behind. */
  expected?: { digest: Digest; size?: number };
  /**
   * Runs once the content is verified and before it becomes visible, e.g. to pin the digest in a
   * lease before a concurrent garbage collector could see an unreferenced blob.
   */
  beforeCommit?: (digest: Digest, size: number) => Promise<void>;
}

export interface WrittenBlob {
  digest: Digest;
  size: number;
  /** False when the blob was already present (nothing was rewritten). */
  written: boolean;
}

export class OciLayout {
  readonly dir: string;
  readonly tmpDir: string;
  readonly tempPrefix: string;

  private constructor(dir: string, opts: OpenLayoutOptions) {
    this.dir = resolve(dir);
    this.tmpDir = opts.tmpDir ? resolve(opts.tmpDir) : join(this.dir, '.tmp');
    this.tempPrefix = opts.tempPrefix ?? String(process.pid);
  }

  /** Opens (and with `create`, initialises) the layout at `dir`. */
  static async open(dir: string, opts: OpenLayoutOptions = {}): Promise<OciLayout> {
    const layout = new OciLayout(dir, opts);
    if (opts.create) await layout.init();
    await layout.checkVersion();
    return layout;
  }

  private async init(): Promise<void> {
    await fsp.mkdir(join(this.dir, 'blobs', 'sha256'), { recursive: true });
    // Both files are created only when absent, so two processes initialising the same directory
    // at once (or a layout written by another tool) are left intact.
    await this.createIfAbsent('oci-layout', JSON.stringify({ imageLayoutVersion: LAYOUT_VERSION }));
    await this.createIfAbsent('index.json', JSON.stringify(emptyIndex()));
  }

  private async createIfAbsent(name: string, content: string): Promise<void> {
    const path = join(this.dir, name);
    if (await statOrUndefined(path)) return;
    await fsp.mkdir(this.tmpDir, { recursive: true });
    const tmp = join(this.tmpDir, tempName(this.tempPrefix, '.tmp'));
    await fsp.writeFile(tmp, content, { flag: 'wx', mode: 0o644 });
    try {
      const fh = await fsp.open(tmp, 'r+');
      await fh.sync();
      await fh.close();
      await publishNoReplace(tmp, path);
    } finally {
      await fsp.rm(tmp, { force: true });
    }
  }

  private async checkVersion(): Promise<void> {
    let text: string;
    try {
      text = await fsp.readFile(join(this.dir, 'oci-layout'), 'utf8');
    } catch (err) {
      if (isErrno(err, 'ENOENT', 'ENOTDIR')) {
        throw new LayoutError(this.dir, 'not an OCI image layout (no oci-layout file)', {
          hint: 'point at a directory written by an OCI tool (skopeo copy ... oci:DIR) or let kiln create it',
          cause: err,
        });
      }
      throw err;
    }
    let version: unknown;
    try {
      version = (JSON.parse(text) as { imageLayoutVersion?: unknown }).imageLayoutVersion;
    } catch (err) {
      throw new LayoutError(this.dir, 'oci-layout is not valid JSON', { cause: err });
    }
    if (typeof version !== 'string' || !/^1\.\d+\.\d+$/.test(version)) {
      throw new LayoutError(this.dir, `unsupported imageLayoutVersion ${JSON.stringify(version)}`, {
        hint: `kiln reads layout version ${LAYOUT_VERSION}`,
      });
    }
  }

  // ---- blobs ----

  blobPath(digest: Digest): string {
    if (!isDigest(digest)) throw new LayoutError(this.dir, `unsupported digest ${JSON.stringify(digest)}`);
    return join(this.dir, 'blobs', 'sha256', digestHex(digest));
  }

  async hasBlob(digest: Digest): Promise<boolean> {
    return (await statOrUndefined(this.blobPath(digest))) !== undefined;
  }

  /** Size of a present blob, or undefined. */
  async blobSize(digest: Digest): Promise<number | undefined> {
    return (await statOrUndefined(this.blobPath(digest)))?.size;
  }

  /**
   * A fresh stream of a blob that fails (with BlobVerificationError naming the blob) if the bytes on
   * disk do not match the digest, or `size` when given.
   */
  async openBlob(desc: { digest: Digest; size?: number }): Promise<Readable> {
    const path = this.blobPath(desc.digest);
    const st = await statOrUndefined(path);
    if (!st) throw new BlobNotFoundError(desc.digest, this.dir);
    if (desc.size !== undefined && st.size !== desc.size) {
      throw new BlobVerificationError(desc.digest, this.dir, { expectedSize: desc.size, actualSize: st.size });
    }
    return chain(createReadStream(path), new VerifyingStream(desc.digest, desc.size ?? st.size, this.dir));
  }

  /** A whole (small) blob, verified. */
  async readBlob(desc: { digest: Digest; size?: number }): Promise<Buffer> {
    return readAll(await this.openBlob(desc));
  }

  /**
   * Stores content as a blob. The bytes go to a temp file in the layout while being hashed; only when
   * digest and size are verified (and fsynced) does the blob appear under its name, so a reader never
   * sees a partial blob. An existing blob is never rewritten.
   */
  async writeBlob(source: BlobSource, opts: WriteBlobOptions = {}): Promise<WrittenBlob> {
    const expected = opts.expected;
    if (expected) {
      const existing = await statOrUndefined(this.blobPath(expected.digest));
      if (existing) {
        discard(source);
        if (expected.size !== undefined && existing.size !== expected.size) {
          throw new BlobVerificationError(expected.digest, this.dir, { expectedSize: expected.size, actualSize: existing.size });
        }
        await opts.beforeCommit?.(expected.digest, existing.size);
        return { digest: expected.digest, size: existing.size, written: false };
      }
    }
    await fsp.mkdir(this.tmpDir, { recursive: true });
    const tmp = join(this.tmpDir, tempName(this.tempPrefix, '.blob'));
    try {
      const digesting = new DigestingStream();
      const limit = new SizeLimit(expected?.digest, expected?.size, this.dir);
      // `flush` fsyncs the file before it is closed, so the published blob is durable.
      await pipeline(toReadable(source), limit, digesting, createWriteStream(tmp, { flags: 'wx', mode: 0o644, flush: true }));
      const digest = digesting.digest;
      const size = digesting.size;
      if (expected && (digest !== expected.digest || (expected.size !== undefined && size !== expected.size))) {
        throw new BlobVerificationError(expected.digest, this.dir, { actualDigest: digest, expectedSize: expected.size, actualSize: size });
      }
      await opts.beforeCommit?.(digest, size);
      await fsp.mkdir(join(this.dir, 'blobs', 'sha256'), { recursive: true });
      const written = await publishNoReplace(tmp, this.blobPath(digest));
      return { digest, size, written };
    } finally {
      await fsp.rm(tmp, { force: true });
    }
  }

  /** Deletes a blob (no reference checks: that is the caller's business). */
  async removeBlob(digest: Digest): Promise<boolean> {
    try {
      await fsp.unlink(this.blobPath(digest));
      return true;
    } catch (err) {
      if (isErrno(err, 'ENOENT')) return false;
      throw err;
    }
  }

  /** Digests of every blob present (names that are not sha256 hex are ignored). */
  async listBlobs(): Promise<Digest[]> {
    return (await hexNamesIn(join(this.dir, 'blobs', 'sha256'))).map((n) => `sha256:${n}` as Digest);
  }

  // ---- index.json ----

  get indexPath(): string {
    return join(this.dir, 'index.json');
  }

  /** The raw bytes of index.json (always a complete version: it is only ever replaced by rename). */
  async rawIndex(): Promise<Buffer> {
    try {
      return await fsp.readFile(this.indexPath);
    } catch (err) {
      if (isErrno(err, 'ENOENT')) throw new LayoutError(this.dir, 'index.json is missing', { cause: err });
      throw err;
    }
  }

  async readIndex(): Promise<Index> {
    return parseIndex(await this.rawIndex(), this.dir);
  }

  /** Replaces index.json atomically (temp file, fsync, rename). */
  async writeIndex(index: Index): Promise<void> {
    await writeFileAtomic(this.indexPath, JSON.stringify(index), { tmpDir: this.tmpDir, tempPrefix: this.tempPrefix });
  }

  /**
   * Read-modify-write of index.json. Not safe against concurrent writers in other processes on its
   * own; the store wraps it in its lock.
   */
  async updateIndex(fn: (index: Index) => Index | Promise<Index>): Promise<Index> {
    const next = await fn(await this.readIndex());
    await this.writeIndex(next);
    return next;
  }

  /**
   * Lists `desc` in index.json, named `refName` when given (`org.opencontainers.image.ref.name`).
   * An entry that had the same ref name is replaced, since a name designates one manifest.
   */
  async addManifest(desc: Descriptor, opts: { refName?: string; annotations?: Record<string, string> } = {}): Promise<void> {
    await this.updateIndex((index) => withManifest(index, desc, opts));
  }

  /** Removes the entries named `refName`; answers how many there were. */
  async removeRef(refName: string): Promise<number> {
    let removed = 0;
    await this.updateIndex((index) => {
      const kept = index.manifests.filter((d) => d.annotations?.[Annotation.refName] !== refName);
      removed = index.manifests.length - kept.length;
      return { ...index, manifests: kept };
    });
    return removed;
  }

  /** Removes every entry for a manifest digest; answers how many there were. */
  async removeManifest(digest: Digest): Promise<number> {
    let removed = 0;
    await this.updateIndex((index) => {
      const kept = index.manifests.filter((d) => d.digest !== digest);
      removed = index.manifests.length - kept.length;
      return { ...index, manifests: kept };
    });
    return removed;
  }

  /** Index entries whose ref name is exactly `refName`. */
  async findRef(refName: string): Promise<Descriptor[]> {
    const index = await this.readIndex();
    return index.manifests.filter((d) => d.annotations?.[Annotation.refName] === refName);
  }

  /** Removes the temp directory when nothing is left in it (for exported layouts). */
  async removeTempDirIfEmpty(): Promise<void> {
    try {
      await fsp.rmdir(this.tmpDir);
      await fsyncDir(this.dir);
    } catch (err) {
      if (!isErrno(err, 'ENOENT', 'ENOTEMPTY', 'EEXIST')) throw err;
    }
  }
}

export function emptyIndex(): Index {
  return { schemaVersion: 2, mediaType: MediaType.ociIndex, manifests: [] };
}

/**
 * index.json with `desc` added, replacing the entry of the same image name: the same
 * `io.containerd.image.name`, or, for entries without one, the same ref name (a tag alone can
 * name images of several repositories).
 */
export function withManifest(index: Index, desc: Descriptor, opts: { refName?: string; annotations?: Record<string, string> } = {}): Index {
  const annotations: Record<string, string> = { ...(desc.annotations ?? {}), ...(opts.annotations ?? {}) };
  if (opts.refName !== undefined) annotations[Annotation.refName] = opts.refName;
  const entry: Descriptor = { mediaType: desc.mediaType, digest: desc.digest, size: desc.size };
  if (desc.platform) entry.platform = desc.platform;
  if (desc.artifactType) entry.artifactType = desc.artifactType;
  if (Object.keys(annotations).length) entry.annotations = annotations;
  const image = annotations[Annotation.containerdImageName];
  const name = annotations[Annotation.refName];
  const same = (d: Descriptor): boolean => {
    const other = d.annotations?.[Annotation.containerdImageName];
    if (image !== undefined && other !== undefined) return other === image;
    return name !== undefined && d.annotations?.[Annotation.refName] === name;
  };
  const kept = index.manifests.filter((d) => !same(d));
  return { ...index, manifests: [...kept, entry] };
}

export function parseIndex(raw: Buffer, where: string): Index {
  let value: unknown;
  try {
    value = JSON.parse(raw.toString('utf8'));
  } catch (err) {
    throw new LayoutError(where, 'index.json is not valid JSON', { cause: err });
  }
  const index = value as Index;
  if (typeof index !== 'object' || index === null || index.schemaVersion !== 2 || !Array.isArray(index.manifests)) {
    throw new LayoutError(where, 'index.json is not an image index (schemaVersion 2 with a manifests array)');
  }
  for (const d of index.manifests) {
    if (!d || !isDigest(d.digest) || typeof d.size !== 'number') {
      throw new LayoutError(where, `index.json lists an invalid descriptor ${JSON.stringify(d).slice(0, 200)}`);
    }
  }
  return index;
}

function toReadable(source: BlobSource): Readable {
  if (source instanceof Readable) return source;
  if (typeof source === 'string' || source instanceof Uint8Array) return Readable.from([Buffer.from(source)]);
  return Readable.from(source);
}

function discard(source: BlobSource): void {
  if (source instanceof Readable) source.destroy();
}

/** Fails a write as soon as the content grows past the expected size, instead of at the end. */
class SizeLimit extends Transform {
  private count = 0;
  constructor(
    private readonly digest: Digest | undefined,
    private readonly limit: number | undefined,
    private readonly where: string,
  ) {
    super();
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    this.count += chunk.length;
    if (this.digest && this.limit !== undefined && this.count > this.limit) {
      done(new BlobVerificationError(this.digest, this.where, { expectedSize: this.limit, actualSize: this.count }));
      return;
    }
    done(null, chunk);
  }
}
