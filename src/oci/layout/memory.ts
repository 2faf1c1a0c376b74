/**
 * An Image held in memory: the smallest possible source, for hand-made images (tests, scratch
 * images, metadata-only changes) before they go to a layout or the store.
 */
import { Readable } from 'node:stream';
import { sha256, type Digest } from '../digest.js';
import type { Image, Layer } from '../image.js';
import { MediaType, layerCompression } from '../mediatypes.js';
import type { Descriptor, ImageConfig, Manifest } from '../types.js';
import { zlib } from '../zlib.js';

export interface MemoryLayerInput {
  /** The blob as it will be stored (compressed when the media type says so). */
  blob: Buffer;
  mediaType?: string;
}

class MemoryLayer implements Layer {
  private readonly diff: Digest;
  constructor(
    private readonly blob: Buffer,
    private readonly type: string,
  ) {
    this.diff = layerCompression(type) === 'gzip' ? sha256(zlib().gunzipSync(blob)) : sha256(blob);
  }
  async digest(): Promise<Digest> {
    return sha256(this.blob);
  }
  async diffID(): Promise<Digest> {
    return this.diff;
  }
  async size(): Promise<number> {
    return this.blob.length;
  }
  async mediaType(): Promise<string> {
    return this.type;
  }
  async compressed(): Promise<Readable> {
    return Readable.from([this.blob]);
  }
  async uncompressed(): Promise<Readable> {
    return Readable.from([layerCompression(this.type) === 'gzip' ? zlib().gunzipSync(this.blob) : this.blob]);
  }
}

/**
 * Builds manifest and config around the given layers. `config` may omit `rootfs` (it is computed);
 * gzip and uncompressed layers are supported.
 */
export function memoryImage(input: {
  layers: MemoryLayerInput[];
  config?: Partial<ImageConfig>;
  annotations?: Record<string, string>;
}): Image {
  const layers = input.layers.map((l) => new MemoryLayer(l.blob, l.mediaType ?? MediaType.ociLayer));
  const layerDescs: Descriptor[] = input.layers.map((l) => ({
    mediaType: l.mediaType ?? MediaType.ociLayer,
    digest: sha256(l.blob),
    size: l.blob.length,
  }));
  const diffIDs = input.layers.map((l) => (layerCompression(l.mediaType ?? MediaType.ociLayer) === 'gzip' ? sha256(zlib().gunzipSync(l.blob)) : sha256(l.blob)));
  const config: ImageConfig = {
    architecture: 'amd64',
    os: 'linux',
    ...input.config,
    rootfs: { type: 'layers', diff_ids: diffIDs },
  };
  const rawConfig = Buffer.from(JSON.stringify(config));
  const manifest: Manifest = {
    schemaVersion: 2,
    mediaType: MediaType.ociManifest,
    config: { mediaType: MediaType.ociConfig, digest: sha256(rawConfig), size: rawConfig.length },
    layers: layerDescs,
    ...(input.annotations ? { annotations: input.annotations } : {}),
  };
  const rawManifest = Buffer.from(JSON.stringify(manifest));
  return {
    mediaType: async () => MediaType.ociManifest,
    digest: async () => sha256(rawManifest),
    manifest: async () => manifest,
    rawManifest: async () => rawManifest,
    configName: async () => manifest.config.digest,
    configFile: async () => config,
    rawConfigFile: async () => rawConfig,
    layers: async () => layers,
  };
}
