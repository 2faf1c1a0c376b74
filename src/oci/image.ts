/**
 * Images as values: small, read-only, lazy interfaces. Sources (the store, an OCI layout, a
 * docker-archive, a registry) produce them; sinks (exporters) consume them. Nothing is read until an
 * accessor is called, and a layer opens a fresh stream on every call, so an image can be copied from
 * any source to any sink without holding a layer in memory.
 */
import type { Readable } from 'node:stream';
import type { Digest } from './digest.js';
import type { Descriptor, ImageConfig, Index, Manifest } from './types.js';

export interface Layer {
  /** Digest of the blob as stored or transferred (compressed when the media type says so). */
  digest(): Promise<Digest>;
  /** Digest of the uncompressed tar (the image config's rootfs.diff_ids entry). */
  diffID(): Promise<Digest>;
  /** Size in bytes of the blob as stored or transferred. */
  size(): Promise<number>;
  mediaType(): Promise<string>;
  /** A fresh stream of the blob exactly as its digest describes it. */
  compressed(): Promise<Readable>;
  /** A fresh stream of the uncompressed tar. */
  uncompressed(): Promise<Readable>;
}

export interface Image {
  mediaType(): Promise<string>;
  /** Digest of the manifest bytes. */
  digest(): Promise<Digest>;
  manifest(): Promise<Manifest>;
  rawManifest(): Promise<Buffer>;
  configName(): Promise<Digest>;
  configFile(): Promise<ImageConfig>;
  rawConfigFile(): Promise<Buffer>;
  layers(): Promise<Layer[]>;
}

export interface ImageIndex {
  mediaType(): Promise<string>;
  digest(): Promise<Digest>;
  indexManifest(): Promise<Index>;
  rawManifest(): Promise<Buffer>;
  image(digest: Digest): Promise<Image>;
  imageIndex(digest: Digest): Promise<ImageIndex>;
}

/** Descriptor of an image's manifest, as an index lists it. */
export async function imageDescriptor(image: Image): Promise<Descriptor> {
  const raw = await image.rawManifest();
  return { mediaType: await image.mediaType(), digest: await image.digest(), size: raw.length };
}
