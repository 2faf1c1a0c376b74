/**
 * Images and indexes read from an OCI layout, as the lazy values of `oci/image.ts`. Nothing is read
 * until asked; documents are read once and verified; every layer stream is fresh and verified.
 */
import type { Readable, Transform } from 'node:stream';
import { isDigest, sha256, type Digest } from '../digest.js';
import type { Image, ImageIndex } from '../image.js';
import { DescriptorLayer, ManifestImage, layerDecoder, once, type ManifestProblem } from '../manifest-image.js';
import { MediaType, isIndexMediaType, isManifestMediaType, layerCompression } from '../mediatypes.js';
import { chooseIndexEntry, hostPlatform, offeredPlatforms } from '../platform.js';
import { Annotation, type Descriptor, type Index, type Platform } from '../types.js';
import { LayoutError, RefNotFoundError, UnsupportedCompressionError } from './errors.js';
import { parseIndex, type OciLayout } from './layout.js';
import { VerifyingStream, chain } from './verify.js';

function parseJson<T>(raw: Buffer, what: string, where: string): T {
  try {
    return JSON.parse(raw.toString('utf8')) as T;
  } catch (err) {
    throw new LayoutError(where, `${what} is not valid JSON`, { cause: err });
  }
}

export class LayoutLayer extends DescriptorLayer {
  constructor(
    private readonly layout: OciLayout,
    descriptor: Descriptor,
    diff: Digest,
  ) {
    super(descriptor, diff);
  }

  compressed(): Promise<Readable> {
    return this.layout.openBlob(this.descriptor);
  }
  async uncompressed(): Promise<Readable> {
    const blob = await this.compressed();
    const compression = layerCompression(this.descriptor.mediaType);
    if (compression === 'none' && this.descriptor.digest === this.diff) return blob;
    const stages: Transform[] = [];
    if (compression === 'gzip' || compression === 'zstd') stages.push(layerDecoder(compression, this.descriptor.mediaType, blob));
    else if (compression !== 'none') {
      blob.destroy();
      throw new UnsupportedCompressionError(this.descriptor.mediaType);
    }
    // The uncompressed bytes must hash to the diffID the config promises.
    stages.push(new VerifyingStream(this.diff, undefined, `${this.layout.dir} (uncompressed layer ${this.descriptor.digest})`));
    return chain(blob, ...stages);
  }
}

export class LayoutImage extends ManifestImage {
  constructor(
    readonly layout: OciLayout,
    readonly descriptor: { digest: Digest; size?: number; mediaType?: string },
  ) {
    super();
  }

  async mediaType(): Promise<string> {
    return this.descriptor.mediaType ?? (await this.manifest()).mediaType ?? MediaType.ociManifest;
  }
  async digest(): Promise<Digest> {
    return this.descriptor.digest;
  }

  protected loadManifest(): Promise<Buffer> {
    return this.layout.readBlob(this.descriptor);
  }
  protected loadBlob(desc: Descriptor): Promise<Buffer> {
    return this.layout.readBlob(desc);
  }
  protected makeLayer(desc: Descriptor, diffID: Digest): LayoutLayer {
    return new LayoutLayer(this.layout, desc, diffID);
  }
  protected invalid(problem: ManifestProblem): Error {
    const { dir } = this.layout;
    const digest = this.descriptor.digest;
    switch (problem.kind) {
      case 'manifest-not-json':
        return new LayoutError(dir, `manifest ${digest} is not valid JSON`, { cause: problem.cause });
      case 'not-a-manifest':
        return new LayoutError(dir, `blob ${digest} is not an image manifest`);
      case 'config-not-json':
        return new LayoutError(dir, `config of ${digest} is not valid JSON`, { cause: problem.cause });
      case 'no-diff-ids':
        return new LayoutError(dir, `config of image ${digest} has no rootfs.diff_ids`);
      case 'layer-count':
        return new LayoutError(dir, `image ${digest} lists ${problem.layers} layers but its config has ${problem.diffIDs} diff_ids`);
    }
  }
}

export class LayoutIndex implements ImageIndex {
  constructor(
    readonly layout: OciLayout,
    readonly descriptor: { digest: Digest; size?: number; mediaType?: string },
  ) {}

  readonly rawManifest = once(() => this.layout.readBlob(this.descriptor));
  readonly indexManifest = once(async () => parseIndex(await this.rawManifest(), this.layout.dir));

  async mediaType(): Promise<string> {
    return this.descriptor.mediaType ?? (await this.indexManifest()).mediaType ?? MediaType.ociIndex;
  }
  async digest(): Promise<Digest> {
    return this.descriptor.digest;
  }
  async image(digest: Digest): Promise<Image> {
    return new LayoutImage(this.layout, await childDescriptor(this, digest));
  }
  async imageIndex(digest: Digest): Promise<ImageIndex> {
    return new LayoutIndex(this.layout, await childDescriptor(this, digest));
  }
}

/**
 * The layout's own index.json as an ImageIndex (for copying everything a layout holds). Its digest
 * is that of the index.json bytes read at the first call.
 */
export class LayoutRootIndex implements ImageIndex {
  constructor(readonly layout: OciLayout) {}
  readonly rawManifest = once(() => this.layout.rawIndex());
  readonly indexManifest = once(async () => parseIndex(await this.rawManifest(), this.layout.dir));
  async mediaType(): Promise<string> {
    return (await this.indexManifest()).mediaType ?? MediaType.ociIndex;
  }
  async digest(): Promise<Digest> {
    return sha256(await this.rawManifest());
  }
  async image(digest: Digest): Promise<Image> {
    return new LayoutImage(this.layout, await childDescriptor(this, digest));
  }
  async imageIndex(digest: Digest): Promise<ImageIndex> {
    return new LayoutIndex(this.layout, await childDescriptor(this, digest));
  }
}

async function childDescriptor(index: ImageIndex, digest: Digest): Promise<Descriptor> {
  const found = (await index.indexManifest()).manifests.find((d) => d.digest === digest);
  if (!found) throw new RefNotFoundError(digest, `index ${await index.digest()}`);
  return found;
}

/**
 * An image for `desc` (a manifest, or an index from which the entry for `platform` is chosen,
 * following nested indexes).
 */
export async function imageFor(
  layout: OciLayout,
  desc: { digest: Digest; size?: number; mediaType?: string },
  platform: Platform = hostPlatform(),
): Promise<LayoutImage> {
  let mediaType = desc.mediaType;
  if (!mediaType || (!isIndexMediaType(mediaType) && !isManifestMediaType(mediaType))) {
    // Untyped entries: the document says what it is.
    const doc = parseJson<{ mediaType?: string; manifests?: unknown }>(await layout.readBlob(desc), `blob ${desc.digest}`, layout.dir);
    mediaType = doc.mediaType ?? (Array.isArray(doc.manifests) ? MediaType.ociIndex : MediaType.ociManifest);
  }
  if (!isIndexMediaType(mediaType)) return new LayoutImage(layout, { ...desc, mediaType });
  const index = await new LayoutIndex(layout, { ...desc, mediaType }).indexManifest();
  const chosen = chooseIndexEntry(index.manifests, platform);
  if (!chosen) {
    throw new RefNotFoundError(`${desc.digest} for ${platform.os}/${platform.architecture}`, layout.dir, {
      hint: `the index offers: ${offeredPlatforms(index.manifests)}`,
    });
  }
  return imageFor(layout, chosen, platform);
}

/**
 * The image a layout names `ref`: an exact `org.opencontainers.image.ref.name`, or a digest listed
 * in index.json; with no ref, the only entry (as skopeo does for `oci:dir`).
 */
export async function resolveLayoutRef(layout: OciLayout, ref: string | undefined, platform?: Platform): Promise<LayoutImage> {
  const index: Index = await layout.readIndex();
  let desc: Descriptor | undefined;
  if (ref === undefined || ref === '') {
    if (index.manifests.length !== 1) {
      throw new RefNotFoundError('', layout.dir, { hint: `the layout holds ${index.manifests.length} images; name one` });
    }
    desc = index.manifests[0];
  } else {
    desc = index.manifests.find((d) => d.annotations?.[Annotation.refName] === ref);
    if (!desc && isDigest(ref)) desc = index.manifests.find((d) => d.digest === ref);
  }
  if (!desc) throw new RefNotFoundError(ref ?? '', layout.dir);
  return imageFor(layout, desc, platform);
}
