/**
 * Images and indexes read from an OCI layout, as the lazy values of `oci/image.ts`. Nothing is read
 * until asked; documents are read once and verified; every layer stream is fresh and verified.
 */
import { createGunzip } from 'node:zlib';
import * as zlib from 'node:zlib';
import type { Readable, Transform } from 'node:stream';
import { isDigest, sha256, type Digest } from '../digest.js';
import type { Image, ImageIndex, Layer } from '../image.js';
import { MediaType, isIndexMediaType, isManifestMediaType, layerCompression } from '../mediatypes.js';
import { Annotation, type Descriptor, type ImageConfig, type Index, type Manifest, type Platform } from '../types.js';
import { LayoutError, RefNotFoundError, UnsupportedCompressionError } from './errors.js';
import { parseIndex, type OciLayout } from './layout.js';
import { VerifyingStream, chain } from './verify.js';

/** Caches the first call of an async function (documents are immutable once named by digest). */
function once<T>(fn: () => Promise<T>): () => Promise<T> {
  let p: Promise<T> | undefined;
  return () => {
    if (!p) {
      p = fn();
      // A failed read may be retried (e.g. the blob arrives later); do not cache the failure.
      p.catch(() => {
        p = undefined;
      });
    }
    return p;
  };
}

function parseJson<T>(raw: Buffer, what: string, where: string): T {
  try {
    return JSON.parse(raw.toString('utf8')) as T;
  } catch (err) {
    throw new LayoutError(where, `${what} is not valid JSON`, { cause: err });
  }
}

export class LayoutLayer implements Layer {
  constructor(
    private readonly layout: OciLayout,
    readonly descriptor: Descriptor,
    private readonly diff: Digest,
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
  compressed(): Promise<Readable> {
    return this.layout.openBlob(this.descriptor);
  }
  async uncompressed(): Promise<Readable> {
    const blob = await this.compressed();
    const compression = layerCompression(this.descriptor.mediaType);
    if (compression === 'none' && this.descriptor.digest === this.diff) return blob;
    const stages: Transform[] = [];
    if (compression === 'gzip') stages.push(createGunzip());
    else if (compression === 'zstd') stages.push(zstdDecompressor(this.descriptor.mediaType, blob));
    else if (compression !== 'none') {
      blob.destroy();
      throw new UnsupportedCompressionError(this.descriptor.mediaType);
    }
    // The uncompressed bytes must hash to the diffID the config promises.
    stages.push(new VerifyingStream(this.diff, undefined, `${this.layout.dir} (uncompressed layer ${this.descriptor.digest})`));
    return chain(blob, ...stages);
  }
}

function zstdDecompressor(mediaType: string, blob: Readable): Transform {
  const make = (zlib as unknown as { createZstdDecompress?: () => Transform }).createZstdDecompress;
  if (!make) {
    blob.destroy();
    throw new UnsupportedCompressionError(mediaType);
  }
  return make();
}

export class LayoutImage implements Image {
  constructor(
    readonly layout: OciLayout,
    readonly descriptor: { digest: Digest; size?: number; mediaType?: string },
  ) {}

  readonly rawManifest = once(() => this.layout.readBlob(this.descriptor));

  readonly manifest = once(async () => {
    const m = parseJson<Manifest>(await this.rawManifest(), `manifest ${this.descriptor.digest}`, this.layout.dir);
    if (m.schemaVersion !== 2 || typeof m.config !== 'object' || !Array.isArray(m.layers)) {
      throw new LayoutError(this.layout.dir, `blob ${this.descriptor.digest} is not an image manifest`);
    }
    return m;
  });

  async mediaType(): Promise<string> {
    return this.descriptor.mediaType ?? (await this.manifest()).mediaType ?? MediaType.ociManifest;
  }
  async digest(): Promise<Digest> {
    return this.descriptor.digest;
  }
  async configName(): Promise<Digest> {
    return (await this.manifest()).config.digest;
  }

  readonly rawConfigFile = once(async () => this.layout.readBlob((await this.manifest()).config));

  readonly configFile = once(async () => {
    const c = parseJson<ImageConfig>(await this.rawConfigFile(), `config of ${this.descriptor.digest}`, this.layout.dir);
    if (!c.rootfs || !Array.isArray(c.rootfs.diff_ids)) {
      throw new LayoutError(this.layout.dir, `config of image ${this.descriptor.digest} has no rootfs.diff_ids`);
    }
    return c;
  });

  async layers(): Promise<Layer[]> {
    const m = await this.manifest();
    const diffIDs = (await this.configFile()).rootfs.diff_ids;
    if (diffIDs.length !== m.layers.length) {
      throw new LayoutError(
        this.layout.dir,
        `image ${this.descriptor.digest} lists ${m.layers.length} layers but its config has ${diffIDs.length} diff_ids`,
      );
    }
    return m.layers.map((d, i) => new LayoutLayer(this.layout, d, diffIDs[i]!));
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

/** The platform of the running Node process, in OCI terms. */
export function hostPlatform(): Platform {
  const arch: Record<string, string> = { x64: 'amd64', ia32: '386', arm64: 'arm64', arm: 'arm', ppc64: 'ppc64le', s390x: 's390x', riscv64: 'riscv64', loong64: 'loong64', mips64el: 'mips64le' };
  const p: Platform = { os: 'linux', architecture: arch[process.arch] ?? process.arch };
  if (process.arch === 'arm') p.variant = 'v7';
  if (process.arch === 'arm64') p.variant = 'v8';
  return p;
}

/** Whether a descriptor's platform satisfies `want` (an unset variant on either side matches). */
export function platformMatches(have: Platform | undefined, want: Platform): boolean {
  if (!have) return false;
  if (have.os !== want.os || have.architecture !== want.architecture) return false;
  const norm = (v: string | undefined): string | undefined => (want.architecture === 'arm64' && v === 'v8' ? undefined : v);
  const hv = norm(have.variant);
  const wv = norm(want.variant);
  return hv === undefined || wv === undefined || hv === wv;
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
  const candidates = index.manifests.filter((d) => !isAttestation(d));
  const chosen = candidates.find((d) => platformMatches(d.platform, platform)) ?? (candidates.length === 1 && !candidates[0]!.platform ? candidates[0] : undefined);
  if (!chosen) {
    const have = candidates.map((d) => (d.platform ? `${d.platform.os}/${d.platform.architecture}${d.platform.variant ? `/${d.platform.variant}` : ''}` : '?')).join(', ');
    throw new RefNotFoundError(`${desc.digest} for ${platform.os}/${platform.architecture}`, layout.dir, {
      hint: `the index offers: ${have || 'nothing'}`,
    });
  }
  return imageFor(layout, chosen, platform);
}

/** BuildKit's attestation manifests sit in indexes with platform unknown/unknown. */
function isAttestation(d: Descriptor): boolean {
  return d.annotations?.['vnd.docker.reference.type'] === 'attestation-manifest' || d.platform?.os === 'unknown';
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
