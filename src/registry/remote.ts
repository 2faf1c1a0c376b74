/**
 * Images in a registry as the lazy values of `oci/image.ts`: nothing is fetched until asked, the
 * manifest is fetched once (and verified), the config once, and every layer call opens a fresh,
 * verified stream from the registry. Used to read an image without storing it (cache import, copy
 * between registries) and by pull, which stores what these values yield.
 */
import type { Readable, Transform } from 'node:stream';
import * as zlib from 'node:zlib';
import type { Digest } from '../oci/digest.js';
import type { Image, ImageIndex, Layer } from '../oci/image.js';
import { UnsupportedCompressionError } from '../oci/layout/errors.js';
import { chain, readAll } from '../oci/layout/verify.js';
import { isIndexMediaType, layerCompression } from '../oci/mediatypes.js';
import { formatPlatform, hostPlatform, selectManifest } from '../oci/platform.js';
import { normalizeReference, type Reference } from '../oci/reference.js';
import type { Descriptor, ImageConfig, Index, Manifest, Platform } from '../oci/types.js';
import { RegistryVerifier, downloadBlob } from './blobs.js';
import type { RegistryClient } from './client.js';
import { ManifestInvalidError, NotFoundError } from './errors.js';
import { fetchManifest, refLabel, type FetchedManifest } from './manifest.js';

/** Configs are small documents; anything past this is not one. */
const MAX_CONFIG_SIZE = 64 * 1024 * 1024;

function once<T>(fn: () => Promise<T>): () => Promise<T> {
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

export class RemoteLayer implements Layer {
  constructor(
    readonly client: RegistryClient,
    readonly repository: string,
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
  async compressed(): Promise<Readable> {
    return downloadBlob(this.client, this.repository, this.descriptor);
  }
  async uncompressed(): Promise<Readable> {
    const compression = layerCompression(this.descriptor.mediaType);
    if (compression === undefined) throw new UnsupportedCompressionError(this.descriptor.mediaType);
    const blob = await this.compressed();
    if (compression === 'none') return blob;
    let decoder: Transform;
    if (compression === 'gzip') decoder = zlib.createGunzip();
    else {
      const make = (zlib as unknown as { createZstdDecompress?: () => Transform }).createZstdDecompress;
      if (!make) {
        blob.destroy();
        throw new UnsupportedCompressionError(this.descriptor.mediaType);
      }
      decoder = make();
    }
    const where = () => ({ registry: this.client.registry, endpoint: `uncompressed layer ${this.descriptor.digest} of ${this.repository}` });
    return chain(blob, decoder, new RegistryVerifier({ digest: this.diff }, where));
  }
}

export class RemoteImage implements Image {
  constructor(
    readonly client: RegistryClient,
    readonly repository: string,
    readonly fetched: FetchedManifest & { doc: { kind: 'manifest' } },
  ) {}

  async mediaType(): Promise<string> {
    return this.fetched.mediaType;
  }
  async digest(): Promise<Digest> {
    return this.fetched.digest;
  }
  async manifest(): Promise<Manifest> {
    return this.fetched.doc.manifest;
  }
  async rawManifest(): Promise<Buffer> {
    return this.fetched.raw;
  }
  async configName(): Promise<Digest> {
    return this.fetched.doc.manifest.config.digest;
  }

  readonly rawConfigFile = once(async () => {
    const desc = this.fetched.doc.manifest.config;
    if (desc.size > MAX_CONFIG_SIZE) {
      throw new ManifestInvalidError(`the config of ${refLabel(this.repository, this.fetched.digest)} claims ${desc.size} bytes`, { registry: this.client.registry });
    }
    return readAll(downloadBlob(this.client, this.repository, desc));
  });

  readonly configFile = once(async () => {
    const raw = await this.rawConfigFile();
    const ctx = { registry: this.client.registry, endpoint: `config ${this.fetched.doc.manifest.config.digest}` };
    let c: ImageConfig;
    try {
      c = JSON.parse(raw.toString('utf8')) as ImageConfig;
    } catch {
      throw new ManifestInvalidError(`the config of ${refLabel(this.repository, this.fetched.digest)} is not JSON`, ctx);
    }
    if (!c || typeof c !== 'object' || !c.rootfs || !Array.isArray(c.rootfs.diff_ids)) {
      throw new ManifestInvalidError(`the config of ${refLabel(this.repository, this.fetched.digest)} has no rootfs.diff_ids: not a container image`, ctx);
    }
    return c;
  });

  async layers(): Promise<Layer[]> {
    const m = this.fetched.doc.manifest;
    const diffIDs = (await this.configFile()).rootfs.diff_ids;
    if (diffIDs.length !== m.layers.length) {
      throw new ManifestInvalidError(
        `${refLabel(this.repository, this.fetched.digest)} lists ${m.layers.length} layers but its config has ${diffIDs.length} diff_ids`,
        { registry: this.client.registry },
      );
    }
    return m.layers.map((d, i) => new RemoteLayer(this.client, this.repository, d, diffIDs[i]!));
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

/** Index entries that are not runnable images (BuildKit's attestations). */
function isAttestation(d: Descriptor): boolean {
  return d.annotations?.['vnd.docker.reference.type'] === 'attestation-manifest' || d.platform?.os === 'unknown';
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
    const entries = node.fetched.doc.index.manifests.filter((d) => !isAttestation(d));
    const untyped = entries.length === 1 && !entries[0]!.platform ? entries[0] : undefined;
    const chosen = selectManifest(entries, platform) ?? untyped;
    if (!chosen) {
      const offered = entries.map((d) => (d.platform ? formatPlatform(d.platform) : '?')).join(', ') || 'nothing';
      throw new NotFoundError(`no image for ${formatPlatform(platform)} in ${refLabel(repository, reference)}`, { registry: client.registry }, {
        hint: `the index offers: ${offered}; choose one with --platform`,
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

