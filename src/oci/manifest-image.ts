/**
 * What the lazy image sources (an OCI layout, a registry) have in common: the manifest is fetched and
 * checked once, the config likewise, and the layers pair the manifest's descriptors with the config's
 * diffIDs. A source supplies the bytes (verified its own way), the wording of its errors and its
 * layer type; how a layer's bytes are streamed and checked stays with the source.
 */
import type { Readable, Transform } from 'node:stream';
import type { Digest } from './digest.js';
import type { Image, Layer } from './image.js';
import { UnsupportedCompressionError } from './layout/errors.js';
import type { Descriptor, ImageConfig, Manifest } from './types.js';
import { zlib } from './zlib.js';

/**
 * Caches the first call of an async function (documents are immutable once named by digest). A
 * failure is not cached: the read may be retried (e.g. the blob arrives later).
 */
export function once<T>(fn: () => Promise<T>): () => Promise<T> {
  let p: Promise<T> | undefined;
  return () => {
    if (!p) {
      p = fn();
      p.catch(() => {
        p = undefined;
      });
    }
    return p;
  };
}

/** What can be wrong with an image's documents; each source words the error its own way. */
export type ManifestProblem =
  | { kind: 'manifest-not-json'; cause: unknown }
  | { kind: 'not-a-manifest' }
  | { kind: 'config-not-json'; cause: unknown }
  | { kind: 'no-diff-ids' }
  | { kind: 'layer-count'; layers: number; diffIDs: number };

export abstract class ManifestImage implements Image {
  abstract mediaType(): Promise<string>;
  abstract digest(): Promise<Digest>;
  /** The manifest's bytes, verified against its digest. */
  protected abstract loadManifest(): Promise<Buffer>;
  /** A small document blob (the config), verified against its descriptor. */
  protected abstract loadBlob(desc: Descriptor): Promise<Buffer>;
  /** The layer for one manifest entry and the diffID the config gives it. */
  protected abstract makeLayer(desc: Descriptor, diffID: Digest): Layer;
  /** The error that reports `problem`. */
  protected abstract invalid(problem: ManifestProblem): Error;

  /** The manifest in `raw`, checked to be an image manifest (a source that holds it parsed already answers that). */
  protected parseManifest(raw: Buffer): Manifest {
    const m = parseDocument<Manifest>(raw, (cause) => this.invalid({ kind: 'manifest-not-json', cause }));
    if (!m || typeof m !== 'object' || m.schemaVersion !== 2 || typeof m.config !== 'object' || m.config === null || !Array.isArray(m.layers)) {
      throw this.invalid({ kind: 'not-a-manifest' });
    }
    return m;
  }

  readonly rawManifest = once(() => this.loadManifest());

  readonly manifest = once(async () => this.parseManifest(await this.rawManifest()));

  async configName(): Promise<Digest> {
    return (await this.manifest()).config.digest;
  }

  readonly rawConfigFile = once(async () => this.loadBlob((await this.manifest()).config));

  readonly configFile = once(async () => {
    const c = parseDocument<ImageConfig>(await this.rawConfigFile(), (cause) => this.invalid({ kind: 'config-not-json', cause }));
    if (!c || typeof c !== 'object' || !c.rootfs || !Array.isArray(c.rootfs.diff_ids)) throw this.invalid({ kind: 'no-diff-ids' });
    return c;
  });

  private readonly layerList = once(async () => {
    const m = await this.manifest();
    const diffIDs = (await this.configFile()).rootfs.diff_ids;
    if (diffIDs.length !== m.layers.length) throw this.invalid({ kind: 'layer-count', layers: m.layers.length, diffIDs: diffIDs.length });
    return m.layers.map((d, i) => this.makeLayer(d, diffIDs[i]!));
  });

  async layers(): Promise<Layer[]> {
    // A copy: callers may rearrange what they are given.
    return [...(await this.layerList())];
  }
}

function parseDocument<T>(raw: Buffer, invalid: (cause: unknown) => Error): T {
  try {
    return JSON.parse(raw.toString('utf8')) as T;
  } catch (err) {
    throw invalid(err);
  }
}

/** A layer known by its manifest descriptor and its diffID; the source says how its bytes are opened. */
export abstract class DescriptorLayer implements Layer {
  constructor(
    readonly descriptor: Descriptor,
    protected readonly diff: Digest,
  ) {}

  async digest(): Promise<Digest> {
    return this.descriptor.digest;
  }
  async diffID(): Promise<Digest> {
    return this.diff;
  }
  async size(): Promise<number> {
    return this.descriptor.size;
  }
  async mediaType(): Promise<string> {
    return this.descriptor.mediaType;
  }
  abstract compressed(): Promise<Readable>;
  abstract uncompressed(): Promise<Readable>;
}

/**
 * The decoder for a blob compressed as its media type says: gunzip, or the runtime's zstd where
 * Node has one. Without one, `blob` is destroyed (nothing will read it) and the layer is refused.
 */
export function layerDecoder(compression: 'gzip' | 'zstd', mediaType: string, blob: Readable): Transform {
  const z = zlib();
  if (compression === 'gzip') return z.createGunzip();
  const make = (z as unknown as { createZstdDecompress?: () => Transform }).createZstdDecompress;
  if (!make) {
    blob.destroy();
    throw new UnsupportedCompressionError(mediaType);
  }
  return make();
}
