/**
 * Images in a registry as the lazy values of `oci/image.ts`: nothing is fetched until asked, the
 * manifest is fetched once (and verified), the config once, and every layer call opens a fresh,
 * verified stream from the registry. Used to read an image without storing it (cache import, copy
 * between registries) and by pull, which stores what these values yield.
 */
import type { Readable } from 'node:stream';
import type { Digest } from '../oci/digest.js';
import type { Image, ImageIndex } from '../oci/image.js';
import { UnsupportedCompressionError } from '../oci/layout/errors.js';
import { chain, readAll } from '../oci/layout/verify.js';
import { DescriptorLayer, ManifestImage, layerDecoder, type ManifestProblem } from '../oci/manifest-image.js';
import { isIndexMediaType, layerCompression } from '../oci/mediatypes.js';
import { chooseIndexEntry, formatPlatform, hostPlatform, offeredPlatforms } from '../oci/platform.js';
import { normalizeReference, type Reference } from '../oci/reference.js';
import type { Descriptor, Index, Manifest, Platform } from '../oci/types.js';
import { RegistryVerifier, downloadBlob } from './blobs.js';
import type { RegistryClient } from './client.js';
import { ManifestInvalidError, NotFoundError } from './errors.js';
import { fetchManifest, refLabel, type FetchedManifest } from './manifest.js';

/** Configs are small documents; anything past this is not one. */
const MAX_CONFIG_SIZE = 64 * 1024 * 1024;

export class RemoteLayer extends DescriptorLayer {
  constructor(
    readonly client: RegistryClient,
    readonly repository: string,
    descriptor: Descriptor,
    diff: Digest,
  ) {
    super(descriptor, diff);
  }

  async compressed(): Promise<Readable> {
    return downloadBlob(this.client, this.repository, this.descriptor);
  }
  async uncompressed(): Promise<Readable> {
    const compression = layerCompression(this.descriptor.mediaType);
    if (compression === undefined) throw new UnsupportedCompressionError(this.descriptor.mediaType);
    const blob = await this.compressed();
    if (compression === 'none') return blob;
    const decoder = layerDecoder(compression, this.descriptor.mediaType, blob);
    const where = () => ({ registry: this.client.registry, endpoint: `uncompressed layer ${this.descriptor.digest} of ${this.repository}` });
    return chain(blob, decoder, new RegistryVerifier({ digest: this.diff }, where));
  }
}

export class RemoteImage extends ManifestImage {
  constructor(
    readonly client: RegistryClient,
    readonly repository: string,
    readonly fetched: FetchedManifest & { doc: { kind: 'manifest' } },
  ) {
    super();
  }

  async mediaType(): Promise<string> {
    return this.fetched.mediaType;
  }
  async digest(): Promise<Digest> {
    return this.fetched.digest;
  }

  // The manifest came verified and parsed with the fetch that found this image.
  protected async loadManifest(): Promise<Buffer> {
    return this.fetched.raw;
  }
  protected override parseManifest(): Manifest {
    return this.fetched.doc.manifest;
  }

  protected async loadBlob(desc: Descriptor): Promise<Buffer> {
    if (desc.size > MAX_CONFIG_SIZE) {
      throw new ManifestInvalidError(`the config of ${refLabel(this.repository, this.fetched.digest)} claims ${desc.size} bytes`, { registry: this.client.registry });
    }
    return readAll(downloadBlob(this.client, this.repository, desc));
  }
  protected makeLayer(desc: Descriptor, diffID: Digest): RemoteLayer {
    return new RemoteLayer(this.client, this.repository, desc, diffID);
  }
  protected invalid(problem: ManifestProblem): Error {
    const label = refLabel(this.repository, this.fetched.digest);
    const ctx = { registry: this.client.registry, endpoint: `config ${this.fetched.doc.manifest.config.digest}` };
    switch (problem.kind) {
      case 'config-not-json':
        return new ManifestInvalidError(`the config of ${label} is not JSON`, ctx);
      case 'no-diff-ids':
        return new ManifestInvalidError(`the config of ${label} has no rootfs.diff_ids: not a container image`, ctx);
      case 'layer-count':
        return new ManifestInvalidError(`${label} lists ${problem.layers} layers but its config has ${problem.diffIDs} diff_ids`, { registry: this.client.registry });
      case 'manifest-not-json':
      case 'not-a-manifest':
        // the fetch that found this image checked its manifest; nothing parses it again.
        return new ManifestInvalidError(`${label} is not an image manifest`, { registry: this.client.registry });
    }
  }
}

export class RemoteIndex implements ImageIndex {
  constructor(
    readonly client: RegistryClient,
    readonly repository: string,
    readonly fetched: FetchedManifest & { doc: { kind: 'index' } },
  ) {}

  async mediaType(): Promise<string> {
    return this.fetched.mediaType;
  }
  async digest(): Promise<Digest> {
    return this.fetched.digest;
  }
  async indexManifest(): Promise<Index> {
    return this.fetched.doc.index;
  }
  async rawManifest(): Promise<Buffer> {
    return this.fetched.raw;
  }
  async image(digest: Digest): Promise<Image> {
    const child = await fetchRemote(this.client, this.repository, digest);
    if (child instanceof RemoteIndex) throw new ManifestInvalidError(`${refLabel(this.repository, digest)} is an index, not an image`, { registry: this.client.registry });
    return child;
  }
  async imageIndex(digest: Digest): Promise<ImageIndex> {
    const child = await fetchRemote(this.client, this.repository, digest);
    if (child instanceof RemoteImage) throw new ManifestInvalidError(`${refLabel(this.repository, digest)} is an image, not an index`, { registry: this.client.registry });
    return child;
  }
}

/** The image or index a tag or digest names in `repository`. */
export async function fetchRemote(client: RegistryClient, repository: string, reference: string): Promise<RemoteImage | RemoteIndex> {
  const fetched = await fetchManifest(client, repository, reference);
  if (fetched.doc.kind === 'index') return new RemoteIndex(client, repository, fetched as FetchedManifest & { doc: { kind: 'index' } });
  return new RemoteImage(client, repository, fetched as FetchedManifest & { doc: { kind: 'manifest' } });
}

/**
 * The image for `platform` (default: this host) behind a tag or digest, following indexes. Answers
 * the chain of indexes walked too, so a caller can report the digest the reference resolved to.
 */
export async function resolveRemoteImage(
  client: RegistryClient,
  repository: string,
  reference: string,
  platform: Platform = hostPlatform(),
): Promise<{ image: RemoteImage; indexes: RemoteIndex[] }> {
  const indexes: RemoteIndex[] = [];
  let node = await fetchRemote(client, repository, reference);
  while (node instanceof RemoteIndex) {
    indexes.push(node);
    if (indexes.length > 4) throw new ManifestInvalidError('indexes nested more than 4 deep', { registry: client.registry });
    const manifests = node.fetched.doc.index.manifests;
    const chosen = chooseIndexEntry(manifests, platform);
    if (!chosen) {
      throw new NotFoundError(`no image for ${formatPlatform(platform)} in ${refLabel(repository, reference)}`, { registry: client.registry }, {
        hint: `the index offers: ${offeredPlatforms(manifests)}; choose one with --platform`,
      });
    }
    node = await fetchRemote(client, repository, chosen.digest);
    if (chosen.mediaType && isIndexMediaType(chosen.mediaType) !== node instanceof RemoteIndex) {
      throw new ManifestInvalidError(`${refLabel(repository, chosen.digest)} is not the ${chosen.mediaType} its index says`, { registry: client.registry });
    }
  }
  return { image: node, indexes };
}

/** A parsed, normalised reference plus the client for its registry. */
export function referenceOf(ref: string | Reference): Reference {
  return typeof ref === 'string' ? normalizeReference(ref) : ref;
}

