/**
 * Layer compression on the way out of kiln: which form each layer takes in an archive, converting it
 * at most once per export (a layer shared by several images is converted once), and the manifest of
 * an image whose layers changed form.
 */
import { createReadStream, createWriteStream, promises as fsp } from 'node:fs';
import { join } from 'node:path';
import { pipeline, type Readable } from 'node:stream';
import { pipeline as pipelineAsync } from 'node:stream/promises';
import { DigestingStream, type Digest } from '../digest.js';
import type { Layer } from '../image.js';
import { compressLayer } from '../layer/index.js';
import { BlobVerificationError, VerifyingStream } from '../layout/index.js';
import { DescriptorLayer } from '../manifest-image.js';
import { MediaType, layerCompression, layerMediaType, type Compression } from '../mediatypes.js';
import type { Descriptor, Manifest } from '../types.js';

export interface LayerCompressionOptions {
  /**
   * The compression of layers that are stored uncompressed (default gzip). Layers already
   * compressed keep their form unless `forceCompression` is set, as BuildKit's exporters do, so
   * an image's existing blobs and digests survive the export.
   */
  compression?: Compression;
  /** Convert every layer to `compression`, also those compressed otherwise (default false). */
  forceCompression?: boolean;
  /** gzip 1–9, zstd 1–19 (the layer module's defaults otherwise). */
  compressionLevel?: number;
  /**
   * A ready-made variant of a layer in the wanted compression, if the caller has one (the store
   * records the compressed forms it has made); undefined means kiln converts the layer itself.
   */
  layerVariant?: (layer: Layer, compression: Compression) => Promise<Layer | undefined>;
}

/** Where converted layer bytes go: a temp file (tar exports) or straight into a layout. */
export type Materializer = (content: Readable) => Promise<{ digest: Digest; size: number; open(): Promise<Readable>; dispose(): Promise<void> }>;

/** A layer in its exported form. */
export class ConvertedLayer extends DescriptorLayer {
  constructor(
    descriptor: Descriptor,
    diff: Digest,
    private readonly openBlob: () => Promise<Readable>,
    private readonly source: Layer,
    readonly dispose: () => Promise<void>,
  ) {
    super(descriptor, diff);
  }
  compressed(): Promise<Readable> {
    return this.openBlob();
  }
  uncompressed(): Promise<Readable> {
    return this.source.uncompressed();
  }
}

export class LayerConverter {
  private readonly made = new Map<string, Promise<ConvertedLayer>>();

  constructor(
    private readonly materialize: Materializer,
    private readonly options: LayerCompressionOptions = {},
  ) {}

  /** The compression a layer of media type `mediaType` gets under these options (undefined: keep it as is). */
  target(mediaType: string): Compression | undefined {
    const current = layerCompression(mediaType);
    if (current === undefined) return undefined; // a type kiln does not know how to convert
    const wanted = this.options.compression ?? 'gzip';
    if (this.options.forceCompression || current === 'none') return current === wanted ? undefined : wanted;
    return undefined;
  }

  /**
   * `layer` in `compression`: itself when it already is, else the caller's variant or a conversion
   * made once per diffID and compression.
   */
  async convert(layer: Layer, compression: Compression): Promise<Layer> {
    if (layerCompression(await layer.mediaType()) === compression) return layer;
    const diffID = await layer.diffID();
    const key = `${diffID}:${compression}`;
    let made = this.made.get(key);
    if (!made) {
      made = this.make(layer, diffID, compression);
      this.made.set(key, made);
      made.catch(() => this.made.delete(key));
    }
    return made;
  }

  private async make(layer: Layer, diffID: Digest, compression: Compression): Promise<ConvertedLayer> {
    const variant = await this.options.layerVariant?.(layer, compression);
    if (variant) {
      const desc: Descriptor = { mediaType: await variant.mediaType(), digest: await variant.digest(), size: await variant.size() };
      return new ConvertedLayer(desc, diffID, () => variant.compressed(), layer, async () => undefined);
    }
    const uncompressed = await layer.uncompressed();
    const level = this.options.compressionLevel;
    const content = compression === 'none' ? uncompressed : compressLayer(uncompressed, compression, level === undefined ? {} : { level }).stream;
    const m = await this.materialize(content);
    if (compression === 'none' && m.digest !== diffID) {
      await m.dispose();
      throw new BlobVerificationError(diffID, 'the uncompressed layer', { actualDigest: m.digest });
    }
    return new ConvertedLayer({ mediaType: layerMediaType(compression), digest: m.digest, size: m.size }, diffID, () => m.open(), layer, () => m.dispose());
  }

  /** Frees the bytes of every conversion made (temp files); their descriptors stay valid for reuse. */
  async disposeAll(): Promise<void> {
    for (const made of this.made.values()) {
      try {
        await (await made).dispose();
      } catch {
        // a failed conversion has nothing to free
      }
    }
  }
}

/** Converted bytes in temp files under `dir`, removed by `dispose`. */
export function tempFileMaterializer(dir: string): Materializer {
  let n = 0;
  return async (content) => {
    await fsp.mkdir(dir, { recursive: true });
    const path = join(dir, `layer-${n++}`);
    const digesting = new DigestingStream();
    try {
      await pipelineAsync(content, digesting, createWriteStream(path, { flags: 'wx', mode: 0o600 }));
    } catch (err) {
      await fsp.rm(path, { force: true });
      throw err;
    }
    const digest = digesting.digest;
    const size = digesting.size;
    return {
      digest,
      size,
      // Checked again on the way out: a temp file is cheap to verify and could be tampered with.
      open: async () => pipeline(createReadStream(path), new VerifyingStream(digest, size, path), () => undefined) as unknown as Readable,
      dispose: () => fsp.rm(path, { force: true }),
    };
  };
}

const OCI_LAYER_TYPE: Record<string, string> = {
  'application/vnd.docker.image.rootfs.diff.tar': MediaType.ociLayer,
  [MediaType.dockerLayerGzip]: MediaType.ociLayerGzip,
  [MediaType.dockerLayerForeignGzip]: MediaType.ociLayerNondistributableGzip,
};

/**
 * The manifest of `image` with its layers replaced by `layers` (same order). Always an OCI manifest:
 * a manifest is only rebuilt when its layers changed (or OCI types were asked for), and OCI types are
 * the ones that can name every compression.
 */
export function rebuiltManifest(original: Manifest, layers: Descriptor[]): Manifest {
  const m: Manifest = {
    schemaVersion: 2,
    mediaType: MediaType.ociManifest,
    config: { ...original.config, mediaType: original.config.mediaType === MediaType.dockerConfig ? MediaType.ociConfig : original.config.mediaType },
    layers: layers.map((d) => ({ ...d, mediaType: OCI_LAYER_TYPE[d.mediaType] ?? d.mediaType })),
  };
  if (original.artifactType) m.artifactType = original.artifactType;
  if (original.subject) m.subject = original.subject;
  if (original.annotations) m.annotations = original.annotations;
  return m;
}

/** The descriptor a (possibly converted) layer has in a manifest: the original one when the layer did not change. */
export async function layerDescriptor(layer: Layer, original: Descriptor | undefined): Promise<Descriptor> {
  const digest = await layer.digest();
  if (original && original.digest === digest) return original;
  return { mediaType: await layer.mediaType(), digest, size: await layer.size() };
}

/** Whether a manifest must be rewritten to carry OCI media types. */
export function hasDockerTypes(manifest: Manifest, mediaType: string): boolean {
  return mediaType !== MediaType.ociManifest || manifest.config.mediaType === MediaType.dockerConfig || manifest.layers.some((l) => l.mediaType in OCI_LAYER_TYPE);
}

