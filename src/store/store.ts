/**
 * kiln's image store: an embedded content store that is at the same time an OCI image layout, so
 * `skopeo inspect oci:<root>:<name>` (and any other layout reader) sees kiln's images as they are.
 *
 *   <root>/oci-layout, index.json, blobs/sha256/<hex>   the OCI layout: every image record is an
 *                                                       index.json entry
 *   <root>/store.lock                                   cross-process lock (see lock.ts)
 *   <root>/leases/<id>.json                             content pinned by running builds and loads
 *   <root>/compressed/<diffID hex>/<gzip|zstd>.json     compressed variants of uncompressed layers
 *   <root>/snapshots/<diffID hex>/fs, l/<short>         unpacked layers for overlay lowerdirs
 *   <root>/cache/                                       build cache (owned by the build engine)
 *   <root>/tmp/                                         temp files, named `<pid>.<start>-…` after
 *                                                       their process so prune can remove debris
 *
 * Image records. An image is named by one index.json entry per name, each carrying
 * `org.opencontainers.image.ref.name` = the normalised name (`docker.io/library/busybox:latest`, or
 * `repo@sha256:…` for an image pulled by digest) and `io.containerd.image.name` = the same value.
 * An image without a name keeps exactly one entry without ref.name: it is "dangling" (Docker's
 * `<none>:<none>`), which `prune` removes. Entries also carry `dev.kiln.stored` (when the entry
 * was written).
 *
 * Why the full name in ref.name: skopeo (containers/image `oci/layout`) splits `oci:<dir>:<image>`
 * at the first colon, validates <image> against the image-spec ref.name grammar (components of
 * alphanumerics joined by `-._:@+`, separated by `/`), and then picks the index entry whose ref.name
 * equals <image> exactly. A normalised name fits that grammar, so
 * `skopeo inspect oci:<root>:docker.io/library/busybox:latest` finds the image, where a tag-only
 * ref.name (`latest`) would be ambiguous between repositories. Two consequences: the root path must
 * not contain a colon, and skopeo only matches entries with OCI media types (manifest or index),
 * which are what kiln writes. Names that other tools wrote into the root in tag-only form
 * (`skopeo copy … oci:<root>:mytag`) are still listed and resolvable under that exact string.
 *
 * Concurrency. Blob writes need no lock (temp file, verify, publish without replacing). Changes to
 * index.json and leases, and garbage collection as a whole, run under the store lock; index.json
 * is only ever replaced by rename, so readers never lock. Content in flight is protected by leases.
 */
import { promises as fsp } from 'node:fs';
import { join, resolve as resolvePath } from 'node:path';
import type { Readable } from 'node:stream';
import pLimit from 'p-limit';
import { digestHex, isDigest, type Digest } from '../oci/digest.js';
import type { Image, ImageIndex } from '../oci/image.js';
import { BlobNotFoundError } from '../oci/layout/errors.js';
import { LayoutImage, LayoutLayer, imageFor } from '../oci/layout/image.js';
import { OciLayout, type BlobSource, type WrittenBlob } from '../oci/layout/layout.js';
import { writeImage, writeImageIndex } from '../oci/layout/write.js';
import { MediaType, isIndexMediaType, layerCompression, layerMediaType } from '../oci/mediatypes.js';
import { Annotation, type Descriptor, type Index, type Platform } from '../oci/types.js';
import { CompressedMappings, type CompressedRecord, type LayerCompression } from './compressed.js';
import { AmbiguousImageError, ImageConflictError, ImageNotFoundError } from './errors.js';
import { collectGarbage, containerImagePins, liveLeases, sweepTemp, treeSize, type GcContext, type GcResult } from './gc.js';
import { defaultLayerCodec, type LayerCodec } from './layer-codec.js';
import { Lease, createLease, leaseExpired, readLeases, type CreateLeaseOptions, type LeaseRecord } from './leases.js';
import { BuildCacheRecords } from './build-cache.js';
import { StoreLock, type StoreLockOptions } from './lock.js';
import { ownerTag } from './owner.js';
import { InvalidReferenceError, formatReference, normalizeName, normalizeReference, parseReference } from '../oci/reference.js';
import { defaultStoreRoot } from './root.js';
import { Snapshots, type Snapshot } from './snapshots.js';

/** Annotations kiln adds to its index.json entries. */
export const StoreAnnotation = {
  /** ISO time the entry was written (the image's arrival in the store under that name). */
  stored: 'dev.kiln.stored',
} as const;

export interface OpenStoreOptions {
  /** Store directory (`--root`); default `defaultStoreRoot()`. */
  root?: string;
  /** Layer extraction and compression; default: the `oci/layer` module. */
  layerCodec?: LayerCodec;
  lock?: StoreLockOptions;
}

export interface ImageRecord {
  /** Manifest (or index) digest: the image ID. */
  digest: Digest;
  mediaType: string;
  /** Size of the manifest document. */
  size: number;
  /** Names pointing at the image, sorted. */
  names: string[];
  /** Earliest `dev.kiln.stored` among its entries. */
  stored: string | undefined;
  dangling: boolean;
}

export interface RemoveResult {
  untagged: string[];
  /** Images whose last entry was removed (their content goes at the next prune). */
  deleted: Digest[];
}

export interface PruneResult extends GcResult {
  /** Build-cache step records dropped. */
  cacheRecordsRemoved: number;
  imagesRemoved: ImageRecord[];
}

export interface DiskUsage {
  images: Array<{ digest: Digest; names: string[]; size: number; uniqueSize: number }>;
  blobs: { count: number; size: number };
  snapshots: { count: number; size: number };
  buildCache: { size: number };
  temp: { size: number };
  total: number;
}

export interface LowerDirs {
  /** Run the mount with this working directory for `lowerdirs` and `option` to resolve. */
  cwd: string;
  /** Short relative links, topmost layer first (overlay's order). */
  lowerdirs: string[];
  /** The same directories as absolute paths. */
  absolute: string[];
  /** `lowerdir=l/…:l/…`, ready for the mount option string. */
  option: string;
  snapshots: Snapshot[];
}

/** Opens (creating when needed) the store at `root`. */
export async function openStore(opts: OpenStoreOptions = {}): Promise<Store> {
  const root = resolvePath(opts.root ?? defaultStoreRoot());
  // A store in use has all of these: one listing tells, where creating each would be a call apiece.
  const present = new Set(await fsp.readdir(root).catch(() => [] as string[]));
  const complete = STORE_ENTRIES.every((name) => present.has(name));
  if (!complete) {
    await fsp.mkdir(root, { recursive: true, mode: 0o700 });
    for (const dir of STORE_DIRS) await fsp.mkdir(join(root, dir), { recursive: true });
  }
  const layout = await OciLayout.open(root, { create: !complete, tmpDir: join(root, 'tmp'), tempPrefix: ownerTag() });
  return new Store(root, layout, opts);
}

/** The directories `openStore` makes. */
const STORE_DIRS = ['leases', 'snapshots', 'l', 'compressed', 'cache', 'tmp'];
/** What a store that needs nothing created has (the layout's own files included). */
const STORE_ENTRIES = [...STORE_DIRS, 'blobs', 'oci-layout', 'index.json'];

export class Store {
  readonly tmpDir: string;
  readonly cacheDir: string;
  readonly leasesDir: string;
  /** The build cache's step records (their pins are garbage-collection roots). */
  readonly buildCache: BuildCacheRecords;
  private readonly lock: StoreLock;
  private readonly snapshots: Snapshots;
  private readonly compressed: CompressedMappings;
  private readonly codec: () => Promise<LayerCodec>;
  private readonly inflight = new Map<string, Promise<unknown>>();

  constructor(
    readonly root: string,
    readonly layout: OciLayout,
    opts: OpenStoreOptions = {},
  ) {
    this.tmpDir = join(root, 'tmp');
    this.cacheDir = join(root, 'cache');
    this.leasesDir = join(root, 'leases');
    this.lock = new StoreLock(root, opts.lock);
    const codec = opts.layerCodec;
    this.codec = codec ? async () => codec : defaultLayerCodec;
    this.snapshots = new Snapshots(root, this.tmpDir, this.codec);
    this.compressed = new CompressedMappings(root, this.tmpDir);
    this.buildCache = new BuildCacheRecords(this.cacheDir, this.tmpDir);
  }

  // ---------------------------------------------------------------- blobs

  blobPath(digest: Digest): string {
    return this.layout.blobPath(digest);
  }
  hasBlob(digest: Digest): Promise<boolean> {
    return this.layout.hasBlob(digest);
  }
  /** A verified stream of a blob. */
  openBlob(desc: { digest: Digest; size?: number }): Promise<Readable> {
    return this.layout.openBlob(desc);
  }
  readBlob(desc: { digest: Digest; size?: number }): Promise<Buffer> {
    return this.layout.readBlob(desc);
  }

  /**
   * Stores a blob, verified against `expected` when given. With a lease the digest is pinned before
   * the blob appears; without one the blob is collectable as soon as this returns, unless an image
   * references it by then.
   */
  writeBlob(source: BlobSource, opts: { expected?: { digest: Digest; size?: number }; lease?: Lease } = {}): Promise<WrittenBlob> {
    return this.withLeaseOrTemporary(opts.lease, 'blob', async (lease) => {
      if (opts.expected) await lease.add(opts.expected.digest);
      return this.layout.writeBlob(source, {
        ...(opts.expected ? { expected: opts.expected } : {}),
        beforeCommit: (digest) => lease.add(digest),
      });
    });
  }

  // ---------------------------------------------------------------- leases

  /** A lease bound to this process (see leases.ts); release it when the work is done. */
  createLease(opts: CreateLeaseOptions = {}): Promise<Lease> {
    return createLease(this.leasesDir, this.tmpDir, this.lock, opts);
  }

  /** Runs `fn` under a fresh lease, released afterwards whatever happens. */
  async withLease<T>(fn: (lease: Lease) => Promise<T>, opts: CreateLeaseOptions = {}): Promise<T> {
    const lease = await this.createLease(opts);
    try {
      return await fn(lease);
    } finally {
      await lease.release();
    }
  }

  async leases(): Promise<Array<LeaseRecord & { expired: boolean }>> {
    return (await readLeases(this.leasesDir)).map((rec) => ({ ...rec, expired: leaseExpired(rec) }));
  }

  private withLeaseOrTemporary<T>(lease: Lease | undefined, label: string, fn: (lease: Lease) => Promise<T>): Promise<T> {
    return lease ? fn(lease) : this.withLease(fn, { label });
  }

  // ---------------------------------------------------------------- images

  /**
   * Copies an image (or an index with its images) into the store and names it. Without names the
   * image is recorded by digest only (dangling until tagged). Every blob is pinned by the lease
   * (the caller's, or a temporary one) before it is written, and the index entry is written last,
   * so a concurrent prune never removes part of an image in flight.
   */
  async putImage(source: Image | ImageIndex, opts: { names?: string[]; lease?: Lease } = {}): Promise<ImageRecord> {
    const names = (opts.names ?? []).map((n) => normalizeName(n));
    return this.withLeaseOrTemporary(opts.lease, 'put-image', async (lease) => {
      const images: Image[] = [];
      const digests = new Set<Digest>();
      await collectSource(source, digests, images);
      const digest = await source.digest();
      for (const name of names) {
        const d = parseReference(name).digest;
        if (d && d !== digest) throw new InvalidReferenceError(name, `the image's digest is ${digest}`);
      }
      await lease.add(...digests);
      const desc = isImageIndex(source) ? await writeImageIndex(this.layout, source) : await writeImage(this.layout, source);
      for (const image of images) await this.recordCompressedLayers(image);
      const index = await this.changeIndex((ix) => setNames(ix, desc, names, new Date().toISOString()));
      return recordsOf(index).find((r) => r.digest === desc.digest)!;
    });
  }

  /** Images in the store, newest first. */
  async images(): Promise<ImageRecord[]> {
    return recordsOf(await this.layout.readIndex()).sort((a, b) => (b.stored ?? '').localeCompare(a.stored ?? '') || a.digest.localeCompare(b.digest));
  }

  /**
   * The record for `ref`: a name (normalised, or exactly as another tool wrote it), a
   * `name@digest`, a digest, or a unique prefix of an image ID.
   */
  async lookup(ref: string): Promise<ImageRecord> {
    return lookupIn(await this.layout.readIndex(), ref);
  }

  /**
   * The image `ref` names, ready to read (lazy, verified). An index resolves to the entry for
   * `platform` (default: this host). A bare digest also resolves when the manifest is stored but
   * not listed (e.g. a child of an index).
   */
  async resolve(ref: string, opts: { platform?: Platform } = {}): Promise<LayoutImage> {
    let rec: ImageRecord;
    try {
      rec = await this.lookup(ref);
    } catch (err) {
      if (err instanceof ImageNotFoundError && isDigest(ref) && (await this.layout.hasBlob(ref))) {
        return imageFor(this.layout, { digest: ref }, opts.platform);
      }
      throw err;
    }
    return imageFor(this.layout, { digest: rec.digest, size: rec.size, mediaType: rec.mediaType }, opts.platform);
  }

  /** Gives the image `src` refers to the name `dst` (moving `dst` off any image it named before). */
  async tag(src: string, dst: string): Promise<ImageRecord> {
    const target = normalizeReference(dst);
    if (target.digest) throw new InvalidReferenceError(dst, 'a tag cannot contain a digest');
    const name = formatReference(target);
    const index = await this.changeIndex((ix) => {
      const rec = lookupIn(ix, src);
      return setNames(ix, { mediaType: rec.mediaType, digest: rec.digest, size: rec.size }, [name], new Date().toISOString());
    });
    return recordsOf(index).find((r) => r.names.includes(name))!;
  }

  /**
   * Applies `change` to index.json under the store lock, writing it only when the entries differ:
   * naming an image with the names it already has (a rebuild that changed nothing) writes nothing.
   * When the index read without the lock already has the change applied, the lock is not taken
   * either: index.json is only ever replaced whole, and a change that races with this one is
   * ordered after it, as it would be had this one been written.
   */
  private async changeIndex(change: (index: Index) => Index): Promise<Index> {
    const current = await this.layout.readIndex();
    if (sameIndex(current, change(current))) return current;
    return this.lock.run(async () => {
      const before = await this.layout.readIndex();
      const after = change(before);
      if (!sameIndex(before, after)) await this.layout.writeIndex(after);
      return after;
    });
  }

  /** Removes one name; an image left without names stays, dangling. */
  async untag(ref: string): Promise<{ untagged: string; digest: Digest }> {
    const name = exactOrNormalized(await this.layout.readIndex(), ref);
    let digest: Digest | undefined;
    await this.lock.run(() =>
      this.layout.updateIndex((ix) => {
        const hit = ix.manifests.find((d) => refNameOf(d) === name);
        if (!hit) throw new ImageNotFoundError(ref);
        digest = hit.digest;
        return keepDangling(
          { ...ix, manifests: ix.manifests.filter((d) => refNameOf(d) !== name) },
          ix.manifests.filter((d) => d.digest === hit.digest),
        );
      }),
    );
    return { untagged: name, digest: digest! };
  }

  /**
   * `docker rmi`: by name, removes that name and deletes the image when it was the last; by ID or
   * digest, deletes the image, refusing when several names point at it unless `force`. Content is
   * reclaimed by the next `prune`/`gc`.
   */
  async remove(ref: string, opts: { force?: boolean } = {}): Promise<RemoveResult> {
    const result: RemoveResult = { untagged: [], deleted: [] };
    await this.lock.run(() =>
      this.layout.updateIndex((ix) => {
        const name = exactOrNormalized(ix, ref);
        const byName = ix.manifests.find((d) => refNameOf(d) === name);
        if (byName) {
          result.untagged.push(name);
          const manifests = ix.manifests.filter((d) => refNameOf(d) !== name);
          const remaining = manifests.filter((d) => d.digest === byName.digest);
          if (remaining.every((d) => refNameOf(d) === undefined)) {
            result.deleted.push(byName.digest);
            return { ...ix, manifests: manifests.filter((d) => d.digest !== byName.digest) };
          }
          return { ...ix, manifests };
        }
        const rec = lookupIn(ix, ref);
        if (rec.names.length > 1 && !opts.force) throw new ImageConflictError(ref, rec.names);
        result.untagged.push(...rec.names);
        result.deleted.push(rec.digest);
        return { ...ix, manifests: ix.manifests.filter((d) => d.digest !== rec.digest) };
      }),
    );
    return result;
  }

  // ---------------------------------------------------------------- layers

  /**
   * The `compression` variant of a layer: the recorded blob when there is one, otherwise made now
   * (from the uncompressed blob, or by recompressing another variant) with the layer module's
   * deterministic settings, stored and recorded. `none` answers the uncompressed blob itself.
   */
  async compressedLayer(diffID: Digest, compression: LayerCompression | 'none', opts: { lease?: Lease } = {}): Promise<Descriptor> {
    if (compression === 'none') {
      if (opts.lease) await opts.lease.add(diffID);
      const size = await this.layout.blobSize(diffID);
      if (size === undefined) throw new BlobNotFoundError(diffID, this.root);
      return { mediaType: MediaType.ociLayer, digest: diffID, size };
    }
    return this.once(`compress:${diffID}:${compression}:${opts.lease?.id ?? ''}`, () =>
      this.withLeaseOrTemporary(opts.lease, 'compress', async (lease) => {
        const known = await this.compressed.get(diffID, compression);
        if (known) {
          await lease.add(known.digest);
          if ((await this.layout.blobSize(known.digest)) === known.size) {
            return { mediaType: known.mediaType, digest: known.digest, size: known.size };
          }
        }
        const tar = await this.openUncompressed(diffID);
        const codec = await this.codec();
        const written = await this.layout.writeBlob(await codec.compress(tar, compression), {
          beforeCommit: (digest) => lease.add(digest),
        });
        const mediaType = layerMediaType(compression);
        await this.compressed.set({ diffID, compression, digest: written.digest, size: written.size, mediaType });
        return { mediaType, digest: written.digest, size: written.size };
      }),
    );
  }

  /**
   * Records that `rec.digest` (already in the store) is `rec.diffID` compressed, so a later push or
   * export sends that blob as it is: a layer fetched compressed from a cache keeps its digest.
   */
  async recordCompressed(rec: CompressedRecord): Promise<void> {
    await this.compressed.set(rec);
  }

  /**
   * Length of a layer's uncompressed tar (what `kiln images` adds up): the plain blob's size when
   * the store has it, else counted once by decompressing the stored variant and remembered with it.
   * Reading a gzip trailer is not enough: it holds only the last member's size, and kiln's parallel
   * gzip writes one member per block.
   */
  async uncompressedSize(diffID: Digest): Promise<number> {
    const plain = await this.layout.blobSize(diffID);
    if (plain !== undefined) return plain;
    for (const rec of await this.compressed.all(diffID)) {
      if (rec.uncompressedSize !== undefined) return rec.uncompressedSize;
    }
    let size = 0;
    for await (const chunk of await this.openUncompressed(diffID)) size += (chunk as Buffer).length;
    for (const rec of await this.compressed.all(diffID)) await this.compressed.set({ ...rec, uncompressedSize: size });
    return size;
  }

  /** A verified stream of a layer's uncompressed tar, from whichever form the store holds. */
  async openUncompressed(diffID: Digest): Promise<Readable> {
    if (await this.layout.hasBlob(diffID)) return this.layout.openBlob({ digest: diffID });
    for (const rec of await this.compressed.all(diffID)) {
      if (await this.layout.hasBlob(rec.digest)) {
        return new LayoutLayer(this.layout, { mediaType: rec.mediaType, digest: rec.digest, size: rec.size }, diffID).uncompressed();
      }
    }
    throw new BlobNotFoundError(diffID, this.root, { hint: 'the store holds neither this layer nor a compressed copy of it' });
  }

  private async recordCompressedLayers(image: Image): Promise<void> {
    let layers;
    try {
      layers = await image.layers();
    } catch {
      return; // not a container image (an artifact): nothing to map
    }
    for (const layer of layers) {
      const mediaType = await layer.mediaType();
      const compression = layerCompression(mediaType);
      if (compression !== 'gzip' && compression !== 'zstd') continue;
      const diffID = await layer.diffID();
      if (await this.compressed.get(diffID, compression)) continue;
      await this.compressed.set({ diffID, compression, digest: await layer.digest(), size: await layer.size(), mediaType });
    }
  }

  /** The snapshot of a layer, if it has been unpacked. */
  snapshot(diffID: Digest): Promise<Snapshot | undefined> {
    return this.snapshots.get(diffID);
  }

  /**
   * The unpacked form of a layer, created once from `openLayer()` (its uncompressed tar, checked
   * against `diffID`) and shared by every image with that layer. Pass the lease of the build or run
   * that will mount it: without one, a prune may remove a snapshot no stored image uses.
   */
  async snapshotFor(diffID: Digest, openLayer: () => Promise<Readable>, opts: { lease?: Lease } = {}): Promise<Snapshot> {
    if (opts.lease) await opts.lease.add(diffID);
    return this.once(`snapshot:${diffID}`, () => this.snapshots.create(diffID, openLayer));
  }

  /**
   * Overlay lowerdirs for an image, creating missing snapshots. A layer that occurs more than once
   * is mounted only at its topmost position: applying a diff again above itself adds and deletes
   * the same paths, so the lower occurrence is invisible (and overlay refuses a directory twice).
   */
  async lowerDirs(image: Image, opts: { lease?: Lease } = {}): Promise<LowerDirs> {
    const layers = await image.layers();
    const diffIDs = await Promise.all(layers.map((l) => l.diffID()));
    if (opts.lease) await opts.lease.add(...diffIDs);
    const seen = new Set<Digest>();
    const topFirst: number[] = [];
    for (let i = layers.length - 1; i >= 0; i--) {
      if (seen.has(diffIDs[i]!)) continue;
      seen.add(diffIDs[i]!);
      topFirst.push(i);
    }
    const limit = pLimit(2);
    const snapshots = await Promise.all(topFirst.map((i) => limit(() => this.snapshotFor(diffIDs[i]!, () => layers[i]!.uncompressed()))));
    const lowerdirs = snapshots.map((s) => s.link);
    return {
      cwd: this.root,
      lowerdirs,
      absolute: snapshots.map((s) => s.fs),
      option: `lowerdir=${lowerdirs.join(':')}`,
      snapshots,
    };
  }

  // ---------------------------------------------------------------- garbage collection

  private gcContext(): GcContext {
    return {
      layout: this.layout,
      snapshots: this.snapshots,
      compressed: this.compressed,
      leasesDir: this.leasesDir,
      tmpDir: this.tmpDir,
      cachePins: () => this.buildCache.pinned(),
      containerPins: () => containerImagePins(this.root),
    };
  }

  /** Removes everything no image and no live lease reaches, plus the debris of dead processes. */
  gc(): Promise<GcResult> {
    return this.lock.run(async () => collectGarbage(this.gcContext(), await this.layout.readIndex()));
  }

  /**
   * `docker image prune`: removes dangling images (`all`: every image) that no live lease pins, then
   * collects garbage.
   */
  prune(opts: { all?: boolean; buildCache?: boolean } = {}): Promise<PruneResult> {
    return this.lock.run(async () => {
      // The build cache goes with --all (or when asked): its records are what keeps its layers.
      const cacheRecordsRemoved = opts.all || opts.buildCache ? await this.buildCache.clear() : 0;
      // And what ADD learnt of URLs (their validators): without it the next build downloads them again.
      if (opts.all || opts.buildCache) await fsp.rm(join(this.cacheDir, 'http'), { recursive: true, force: true });
      const index = await this.layout.readIndex();
      const leases = await liveLeases(this.leasesDir);
      // Images of containers stay, as leased ones do.
      const leased = new Set([...leases.live.flatMap((l) => l.digests), ...(await containerImagePins(this.root))]);
      const doomed = index.manifests.filter((d) => !leased.has(d.digest) && (opts.all || refNameOf(d) === undefined));
      const kept: Index = { ...index, manifests: index.manifests.filter((d) => !doomed.includes(d)) };
      if (doomed.length) await this.layout.writeIndex(kept);
      const gc = await collectGarbage(this.gcContext(), kept, leases);
      return { ...gc, cacheRecordsRemoved, imagesRemoved: recordsOf({ ...index, manifests: doomed }) };
    });
  }

  /**
   * Runs `fn` under the store lock when no other kiln process holds a lease, that is when nothing is
   * building, pulling or pushing; else leaves it and returns undefined. A process takes its lease
   * under the same lock, so none can start in between.
   */
  whenIdle<T>(fn: () => Promise<T>): Promise<T | undefined> {
    return this.lock.run(async () => {
      const { live } = await liveLeases(this.leasesDir);
      if (live.some((l) => l.pid !== undefined && l.pid !== process.pid)) return undefined;
      return fn();
    });
  }

  /** Space used: per image (total and not shared with other images), blobs, snapshots, build cache, temp. */
  async du(): Promise<DiskUsage> {
    const index = await this.layout.readIndex();
    const records = recordsOf(index);
    const perImage = new Map<Digest, Map<Digest, number>>();
    const users = new Map<Digest, number>();
    for (const rec of records) {
      const blobs = new Map<Digest, number>();
      await this.imageBlobs({ digest: rec.digest, size: rec.size, mediaType: rec.mediaType }, blobs);
      perImage.set(rec.digest, blobs);
      for (const d of blobs.keys()) users.set(d, (users.get(d) ?? 0) + 1);
    }
    const images = records.map((rec) => {
      const blobs = perImage.get(rec.digest)!;
      let size = 0;
      let uniqueSize = 0;
      for (const [d, n] of blobs) {
        size += n;
        if (users.get(d) === 1) uniqueSize += n;
      }
      return { digest: rec.digest, names: rec.names, size, uniqueSize };
    });
    const blobDigests = await this.layout.listBlobs();
    let blobSize = 0;
    for (const d of blobDigests) blobSize += (await this.layout.blobSize(d)) ?? 0;
    const snapshotIds = await this.snapshots.list();
    let snapshotSize = 0;
    for (const id of snapshotIds) snapshotSize += await treeSize(join(this.snapshots.dir, id));
    const cache = await treeSize(this.cacheDir);
    const temp = await treeSize(this.tmpDir);
    return {
      images,
      blobs: { count: blobDigests.length, size: blobSize },
      snapshots: { count: snapshotIds.length, size: snapshotSize },
      buildCache: { size: cache },
      temp: { size: temp },
      total: blobSize + snapshotSize + cache + temp,
    };
  }

  /** Removes only the debris of dead processes (no lock needed: nothing live is touched). */
  async cleanTemp(): Promise<{ removed: number; bytes: number }> {
    return sweepTemp(this.tmpDir);
  }

  private async imageBlobs(desc: { digest: Digest; size: number; mediaType?: string }, out: Map<Digest, number>): Promise<void> {
    if (out.has(desc.digest)) return;
    out.set(desc.digest, desc.size);
    let doc: { manifests?: Descriptor[]; config?: Descriptor; layers?: Descriptor[] };
    try {
      doc = JSON.parse((await this.layout.readBlob(desc)).toString('utf8')) as typeof doc;
    } catch {
      return;
    }
    if (Array.isArray(doc.manifests)) {
      for (const child of doc.manifests) await this.imageBlobs(child, out);
      return;
    }
    if (doc.config) out.set(doc.config.digest, doc.config.size);
    for (const l of doc.layers ?? []) out.set(l.digest, l.size);
  }

  /** Shares one in-flight operation between concurrent callers in this process. */
  private once<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const running = this.inflight.get(key) as Promise<T> | undefined;
    if (running) return running;
    const p = fn().finally(() => this.inflight.delete(key));
    this.inflight.set(key, p);
    return p;
  }
}

// ---------------------------------------------------------------- index.json records

function refNameOf(d: Descriptor): string | undefined {
  return d.annotations?.[Annotation.refName];
}

function isImageIndex(source: Image | ImageIndex): source is ImageIndex {
  return typeof (source as ImageIndex).indexManifest === 'function';
}

/** Digests an image (or index) consists of, and its images, for leasing before writing. */
async function collectSource(source: Image | ImageIndex, digests: Set<Digest>, images: Image[]): Promise<void> {
  digests.add(await source.digest());
  if (isImageIndex(source)) {
    for (const child of (await source.indexManifest()).manifests) {
      if (isIndexMediaType(child.mediaType)) await collectSource(await source.imageIndex(child.digest), digests, images);
      else await collectSource(await source.image(child.digest), digests, images);
    }
    return;
  }
  images.push(source);
  const manifest = await source.manifest();
  digests.add(manifest.config.digest);
  for (const l of manifest.layers) digests.add(l.digest);
  try {
    for (const d of (await source.configFile()).rootfs.diff_ids) digests.add(d);
  } catch {
    // not a container image config: there are no diffIDs to pin
  }
}

/** Groups index.json entries into one record per digest. */
export function recordsOf(index: Index): ImageRecord[] {
  const byDigest = new Map<Digest, ImageRecord>();
  for (const d of index.manifests) {
    let rec = byDigest.get(d.digest);
    if (!rec) {
      rec = { digest: d.digest, mediaType: d.mediaType, size: d.size, names: [], stored: undefined, dangling: true };
      byDigest.set(d.digest, rec);
    }
    const name = refNameOf(d);
    if (name !== undefined && !rec.names.includes(name)) rec.names.push(name);
    const stored = d.annotations?.[StoreAnnotation.stored];
    if (stored && (!rec.stored || stored < rec.stored)) rec.stored = stored;
  }
  for (const rec of byDigest.values()) {
    rec.names.sort();
    rec.dangling = rec.names.length === 0;
  }
  return [...byDigest.values()];
}

/**
 * index.json after naming `desc` with `names` (no names: recorded by digest). Names move off the
 * images they pointed at; an image that loses its last name keeps one unnamed (dangling) entry.
 */
export function setNames(index: Index, desc: Descriptor, names: string[], now: string): Index {
  const base: Descriptor = { mediaType: desc.mediaType, digest: desc.digest, size: desc.size };
  if (names.length === 0) {
    if (index.manifests.some((d) => d.digest === desc.digest)) return index;
    return { ...index, manifests: [...index.manifests, { ...base, annotations: { [StoreAnnotation.stored]: now } }] };
  }
  const before = index.manifests;
  const displaced = before.filter((d) => {
    const n = refNameOf(d);
    return n !== undefined && names.includes(n);
  });
  let manifests = before.filter((d) => !displaced.includes(d) && !(d.digest === desc.digest && refNameOf(d) === undefined));
  for (const name of names) {
    const previous = displaced.find((d) => refNameOf(d) === name && d.digest === desc.digest);
    manifests.push({
      ...base,
      annotations: {
        [Annotation.refName]: name,
        [Annotation.containerdImageName]: name,
        // Re-tagging an image with a name it already has keeps the original time.
        [StoreAnnotation.stored]: previous?.annotations?.[StoreAnnotation.stored] ?? now,
      },
    });
  }
  manifests = keepDangling({ ...index, manifests }, displaced).manifests;
  return { ...index, manifests };
}

/** Whether two index.json documents have the same content (entries in the same order). */
function sameIndex(a: Index, b: Index): boolean {
  return a === b || JSON.stringify(a) === JSON.stringify(b);
}

/** Adds an unnamed entry for each image among `removed` that no longer has any entry. */
function keepDangling(index: Index, removed: Descriptor[]): Index {
  const manifests = [...index.manifests];
  for (const d of removed) {
    if (manifests.some((m) => m.digest === d.digest)) continue;
    const annotations: Record<string, string> = {};
    const stored = d.annotations?.[StoreAnnotation.stored];
    if (stored) annotations[StoreAnnotation.stored] = stored;
    manifests.push({ mediaType: d.mediaType, digest: d.digest, size: d.size, ...(stored ? { annotations } : {}) });
  }
  return { ...index, manifests };
}

/** The name as written in index.json when it is there verbatim, else its normalised form. */
function exactOrNormalized(index: Index, ref: string): string {
  if (index.manifests.some((d) => refNameOf(d) === ref)) return ref;
  try {
    return normalizeName(ref);
  } catch {
    return ref;
  }
}

/**
 * The record `ref` names as a reference: a stored name verbatim, else the normalised name
 * (`alpine` is `docker.io/library/alpine:latest`), else the digest of `name@digest`. `name` is the
 * stored name that matched (undefined for a match by digest).
 */
export function findByReference(records: readonly ImageRecord[], ref: string): { record: ImageRecord; name: string | undefined } | undefined {
  const exact = records.find((r) => r.names.includes(ref));
  if (exact) return { record: exact, name: ref };
  let parsed;
  try {
    parsed = normalizeReference(ref);
  } catch {
    return undefined;
  }
  const name = formatReference(parsed);
  const byName = records.find((r) => r.names.includes(name));
  if (byName) return { record: byName, name };
  if (parsed.digest) {
    const byDigest = records.find((r) => r.digest === parsed.digest);
    if (byDigest) return { record: byDigest, name: undefined };
  }
  return undefined;
}

export function lookupIn(index: Index, ref: string): ImageRecord {
  const records = recordsOf(index);
  if (isDigest(ref)) {
    const hit = records.find((r) => r.digest === ref);
    if (hit) return hit;
    throw new ImageNotFoundError(ref);
  }
  const named = findByReference(records, ref);
  if (named) return named.record;
  const hex = ref.startsWith('sha256:') ? ref.slice('sha256:'.length) : ref;
  if (/^[a-f0-9]{1,64}$/.test(hex)) {
    const matches = records.filter((r) => digestHex(r.digest).startsWith(hex));
    if (matches.length === 1) return matches[0]!;
    if (matches.length > 1) throw new AmbiguousImageError(ref, matches.map((m) => m.digest));
  }
  throw new ImageNotFoundError(ref);
}
