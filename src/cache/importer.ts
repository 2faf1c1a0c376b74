/**
 * `--cache-from`: cache manifests (registry, local OCI layout) and inline cache (an image's config)
 * read at the start of a build, matched against step keys without fetching a layer.
 *
 * A step found here is cached like one found in the store, except that its layer stays where it
 * is until something needs its content: a later RUN or COPY that misses and must see the
 * filesystem, a `COPY --from` of the stage, or the end of the build (the target's layers are the
 * image and must be in the store). A chain of cached steps therefore costs no download at all
 * except the final image's layers. A fetched layer enters the store compressed as the cache holds
 * it (and is recorded as the layer's gzip variant, so pushing the image later sends the same blob)
 * and uncompressed, as kiln keeps layers.
 *
 * A source that cannot be read (registry down, no cache pushed yet) is a warning, as in buildx: the
 * build goes on without it.
 */
import { PassThrough, type Readable } from 'node:stream';
import { resolve as resolvePath } from 'node:path';
import { KilnError } from '../errors.js';
import type { Digest } from '../oci/digest.js';
import type { Image } from '../oci/image.js';
import { MediaType, layerCompression } from '../oci/mediatypes.js';
import type { Descriptor, ImageConfig } from '../oci/types.js';
import type { Lease, Store } from '../store/index.js';
import type { Registries, RegistryClient } from '../registry/index.js';
import { CacheMediaType, INLINE_CACHE_FIELD, parseCacheConfig, type CacheConfig, type CacheMountEntry } from './format.js';
import type { CacheFromSpec } from './spec.js';

/** Where a cache's blobs are read from. */
export interface BlobOrigin {
  label: string;
  open(desc: Descriptor): Promise<Readable>;
  /** Set when the blobs are in a registry repository (an export there can mount them). */
  registry?: { client: RegistryClient; repository: string };
}

/** A step record as the build cache keeps it (see build/steps.ts). */
export interface ImportedStep {
  key: unknown;
  step: string;
  empty: boolean;
  layer: { desc: Descriptor; diffID: Digest };
  pins: Digest[];
  lastUsed: string;
  /** Where it came from, for progress. */
  origin: string;
  /** See CacheRecordEntry.resultKey. */
  resultKey?: Digest;
}

/** A layer the cache holds and the store may not. */
export interface RemoteLayer {
  diffID: Digest;
  /** The compressed blob as the cache holds it. */
  blob: Descriptor;
  /** Uncompressed size. */
  size: number;
  origin: BlobOrigin;
}

export interface ImportOptions {
  store: Store;
  lease: Lease;
  /** Shared connections for blob downloads (full retries). */
  registries: Registries;
  /** Connections for reading cache manifests: few retries, so an unreachable cache fails fast. */
  metaRegistries: Registries;
  warn: (message: string) => void;
  log: (line: string) => void;
}

interface LoadedSource {
  origin: BlobOrigin;
  config: CacheConfig;
  layers: Descriptor[];
}

export class CacheImporter {
  private readonly steps = new Map<Digest, ImportedStep>();
  private readonly remote = new Map<Digest, RemoteLayer>();
  private readonly fetching = new Map<Digest, Promise<void>>();
  private readonly mounts: Array<{ entry: CacheMountEntry; blob: Descriptor; origin: BlobOrigin }> = [];

  private constructor(private readonly opts: ImportOptions) {}

  static async open(specs: readonly CacheFromSpec[], opts: ImportOptions): Promise<CacheImporter> {
    const importer = new CacheImporter(opts);
    const loaded = await Promise.all(
      specs.map(async (spec) => {
        const label = spec.type === 'registry' ? spec.ref : spec.src;
        try {
          return await (spec.type === 'registry' ? loadRegistry(spec.ref, opts) : loadLocal(spec.src));
        } catch (err) {
          const why = err instanceof KilnError ? err.message : err instanceof Error ? err.message : String(err);
          opts.warn(`cache import from ${label} skipped: ${why}`);
          return undefined;
        }
      }),
    );
    for (const src of loaded) if (src) importer.add(src);
    return importer;
  }

  /** How many step records the sources offered. */
  get size(): number {
    return this.steps.size;
  }

  private add(src: LoadedSource): void {
    for (const r of src.config.records) {
      if (this.steps.has(r.key)) continue;
      const blob = src.layers[r.layer]!;
      const desc: Descriptor = { mediaType: MediaType.ociLayer, digest: r.diffID, size: r.size };
      this.steps.set(r.key, {
        key: r.record,
        step: r.step,
        empty: r.empty,
        layer: { desc, diffID: r.diffID },
        pins: [r.diffID],
        lastUsed: new Date().toISOString(),
        origin: src.origin.label,
        ...(r.resultKey ? { resultKey: r.resultKey } : {}),
      });
      if (!this.remote.has(r.diffID)) this.remote.set(r.diffID, { diffID: r.diffID, blob, size: r.size, origin: src.origin });
    }
    for (const m of src.config.mounts) {
      if (this.mounts.some((x) => x.entry.id === m.id)) continue;
      this.mounts.push({ entry: m, blob: src.layers[m.layer]!, origin: src.origin });
    }
    this.opts.log(`imported ${src.config.records.length} cache records${src.config.mounts.length ? ` and ${src.config.mounts.length} cache mounts` : ''} from ${src.origin.label}`);
  }

  /** The imported record for a step key, if a source has one. */
  lookup(key: Digest): ImportedStep | undefined {
    return this.steps.get(key);
  }

  /** The cache's copy of a layer the store may lack. */
  remoteLayer(diffID: Digest): RemoteLayer | undefined {
    return this.remote.get(diffID);
  }

  /**
   * Starts fetching a layer that will surely be needed (a step of the final image) while the build
   * goes on; a failure surfaces when the layer is materialized.
   */
  prefetch(layer: { diffID: Digest }): void {
    this.fetch(layer.diffID).catch(() => undefined);
  }

  /** Brings every layer of `layers` the store lacks into it (once each, in parallel). */
  async materialize(layers: ReadonlyArray<{ diffID: Digest }>): Promise<void> {
    await Promise.all(layers.map((l) => this.fetch(l.diffID)));
  }

  private fetch(diffID: Digest): Promise<void> {
    const remote = this.remote.get(diffID);
    if (!remote) return Promise.resolve();
    let p = this.fetching.get(diffID);
    if (!p) {
      p = this.fetchLayer(remote);
      this.fetching.set(diffID, p);
    }
    return p;
  }

  private async fetchLayer(remote: RemoteLayer): Promise<void> {
    const { store, lease } = this.opts;
    if (await store.hasBlob(remote.diffID)) {
      await lease.add(remote.diffID);
      return;
    }
    const compression = layerCompression(remote.blob.mediaType);
    if (compression === undefined) throw new KilnError('CACHE_LAYER_UNSUPPORTED', `cache layer ${remote.blob.digest} from ${remote.origin.label} has media type ${remote.blob.mediaType}, which is not a layer`);
    const { decompress } = await import('../oci/layer/index.js');
    if (!(await store.hasBlob(remote.blob.digest))) {
      // One pass over the download: the compressed blob and its unpacked tar are written together.
      const source = await remote.origin.open(remote.blob);
      const compressed = new PassThrough();
      const plain = new PassThrough();
      source.pipe(compressed);
      if (compression !== 'none') source.pipe(plain);
      const fail = (err: Error) => {
        compressed.destroy(err);
        plain.destroy(err);
      };
      source.on('error', fail);
      try {
        await Promise.all([
          store.writeBlob(compressed, { expected: { digest: remote.blob.digest, size: remote.blob.size }, lease }),
          compression !== 'none' ? store.writeBlob(decompress(plain), { expected: { digest: remote.diffID }, lease }) : undefined,
        ]);
      } catch (err) {
        source.destroy();
        fail(err instanceof Error ? err : new Error(String(err)));
        throw err;
      }
    } else {
      await lease.add(remote.blob.digest);
      if (compression !== 'none') await store.writeBlob(decompress(await store.openBlob(remote.blob)), { expected: { digest: remote.diffID }, lease });
    }
    if (compression === 'gzip' || compression === 'zstd') {
      await store.recordCompressed({ diffID: remote.diffID, compression, digest: remote.blob.digest, size: remote.blob.size, mediaType: remote.blob.mediaType, uncompressedSize: remote.size });
    }
  }

  /**
   * Restores exported cache mounts into `<store>/cache/mounts/<id>/data` before any step runs; a
   * mount the store already has is left as it is (it is at least as new as the cache's).
   */
  async restoreMounts(canChown: boolean): Promise<void> {
    if (this.mounts.length === 0) return;
    const { restoreMount } = await import('./mounts.js');
    for (const m of this.mounts) {
      const restored = await restoreMount(this.opts.store, m.entry.id, () => m.origin.open(m.blob), { canChown });
      if (restored) this.opts.log(`restored cache mount ${m.entry.id} (${m.entry.size} bytes) from ${m.origin.label}`);
    }
  }
}

/** The records of an image or cache manifest (an image's inline cache lives in its config). */
async function recordsOf(image: Image, origin: BlobOrigin, where: string): Promise<LoadedSource> {
  const manifest = await image.manifest();
  const raw = JSON.parse((await image.rawConfigFile()).toString('utf8')) as unknown;
  let config: CacheConfig | undefined;
  if (manifest.config.mediaType === CacheMediaType.config) {
    config = parseCacheConfig(raw, manifest.layers.length);
  } else {
    // An image: its inline cache, with layers indexing the image's own.
    const inline = (raw as Record<string, unknown>)[INLINE_CACHE_FIELD];
    config = inline === undefined ? undefined : parseCacheConfig(inline, manifest.layers.length);
    if (!config) throw new KilnError('CACHE_NOT_FOUND', `${where} is an image without inline cache (build it with --cache-to type=inline)`);
    const diffIDs = (raw as ImageConfig).rootfs?.diff_ids ?? [];
    config.records = config.records.filter((r) => diffIDs[r.layer] === r.diffID);
  }
  if (!config) throw new KilnError('CACHE_INVALID', `${where} is not a kiln cache manifest`);
  return { origin, config, layers: manifest.layers };
}

async function loadRegistry(ref: string, opts: ImportOptions): Promise<LoadedSource> {
  const { normalizeReference } = await import('../oci/reference.js');
  const { resolveRemoteImage, downloadBlob } = await import('../registry/index.js');
  const r = normalizeReference(ref);
  const tag = r.digest ?? r.tag ?? 'latest';
  const { image } = await resolveRemoteImage(opts.metaRegistries.get(r.domain), r.path, tag);
  const client = opts.registries.get(r.domain);
  const origin: BlobOrigin = {
    label: ref,
    open: async (desc) => downloadBlob(client, r.path, desc),
    registry: { client, repository: r.path },
  };
  return recordsOf(image, origin, ref);
}

async function loadLocal(src: string): Promise<LoadedSource> {
  const { OciLayout, imageFor } = await import('../oci/layout/index.js');
  const dir = resolvePath(src);
  let layout;
  try {
    layout = await OciLayout.open(dir);
  } catch (err) {
    throw new KilnError('CACHE_NOT_FOUND', `${src} is not an OCI layout: ${err instanceof Error ? err.message : String(err)}`);
  }
  const index = await layout.readIndex();
  const entry = [...index.manifests].reverse().find((m) => m.annotations?.['org.opencontainers.image.ref.name'] === 'latest') ?? index.manifests[index.manifests.length - 1];
  if (!entry) throw new KilnError('CACHE_NOT_FOUND', `${src} holds no cache manifest`);
  const image = await imageFor(layout, entry);
  const origin: BlobOrigin = { label: src, open: (desc) => layout.openBlob(desc) };
  return recordsOf(image as Image, origin, src);
}
