/**
 * Images read from an indexed tar (docker-archive or OCI archive). Manifest and config are small and
 * read (verified) when the archive is opened; layers stay in the archive file and are streamed from
 * it on every call, checked against the digests taken while indexing and, uncompressed, against the
 * config's diffIDs.
 */
import { createHash, type Hash } from 'node:crypto';
import { Transform, pipeline, type Readable, type TransformCallback } from 'node:stream';
import { sha256, type Digest } from '../digest.js';
import type { Image, Layer } from '../image.js';
import { decompress } from '../layer/index.js';
import { DescriptorLayer } from '../manifest-image.js';
import { layerCompression } from '../mediatypes.js';
import type { Descriptor, ImageConfig, Manifest } from '../types.js';
import { DiffIDMismatchError } from './errors.js';
import type { TarArchive, TarEntry } from './tarindex.js';

export class ArchiveLayer extends DescriptorLayer {
  constructor(
    private readonly archive: TarArchive,
    private readonly entry: TarEntry,
    descriptor: Descriptor,
    diff: Digest,
  ) {
    super(descriptor, diff);
  }

  async compressed(): Promise<Readable> {
    return this.archive.open(this.entry);
  }
  async uncompressed(): Promise<Readable> {
    const blob = this.archive.open(this.entry);
    if (layerCompression(this.descriptor.mediaType) === 'none' && this.descriptor.digest === this.diff) return blob;
    // The compression is told by the bytes, not the media type: docker-archives do not record one.
    return pipeline(decompress(blob), new DiffIDCheck(this.diff, this.entry.name, this.archive.where), () => undefined) as unknown as Readable;
  }
}

/** Passes a layer's uncompressed bytes through and fails at the end unless they hash to its diffID. */
export class DiffIDCheck extends Transform {
  private readonly hash: Hash = createHash('sha256');
  constructor(
    private readonly diffID: Digest,
    private readonly layer: string,
    private readonly where: string,
  ) {
    super();
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    this.hash.update(chunk);
    done(null, chunk);
  }
  override _flush(done: TransformCallback): void {
    const actual: Digest = `sha256:${this.hash.digest('hex')}`;
    done(actual === this.diffID ? null : new DiffIDMismatchError(this.diffID, this.layer, this.where, actual));
  }
}

/** An image whose documents are held in memory (they are small) and whose layers are lazy. */
export class StaticImage implements Image {
  private readonly manifestDigest: Digest;
  constructor(
    private readonly raw: { manifest: Buffer; config: Buffer },
    private readonly parsed: { manifest: Manifest; config: ImageConfig },
    private readonly layerList: Layer[],
    private readonly type: string,
  ) {
    this.manifestDigest = sha256(raw.manifest);
  }

  async mediaType(): Promise<string> {
    return this.type;
  }
  async digest(): Promise<Digest> {
    return this.manifestDigest;
  }
  async manifest(): Promise<Manifest> {
    return this.parsed.manifest;
  }
  async rawManifest(): Promise<Buffer> {
    return this.raw.manifest;
  }
  async configName(): Promise<Digest> {
    return this.parsed.manifest.config.digest;
  }
  async configFile(): Promise<ImageConfig> {
    return this.parsed.config;
  }
  async rawConfigFile(): Promise<Buffer> {
    return this.raw.config;
  }
  async layers(): Promise<Layer[]> {
    return [...this.layerList];
  }
}
