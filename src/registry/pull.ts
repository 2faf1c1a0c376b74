/**
 * Pulling an image into the store: the manifest (an index resolves to the wanted platform), then
 * the config, then the layers in parallel, each streamed from the registry into the store with its
 * digest and size verified on the way (a mismatch stores nothing), skipping blobs the store has.
 * Everything is pinned by a lease before it is written, and the image is named only once all of it
 * is there, so an interrupted pull leaves no half image behind — and the next pull fetches only
 * what is missing.
 */
import pLimit from 'p-limit';
import type { Digest } from '../oci/digest.js';
import { BlobVerificationError } from '../oci/layout/errors.js';
import { parsePlatform } from '../oci/platform.js';
import { repositoryName, type Reference } from '../oci/reference.js';
import type { ImageConfig, Platform } from '../oci/types.js';
import type { Lease, Store } from '../store/index.js';
import type { LayoutImage } from '../oci/layout/index.js';
import { BlobRecord } from './blob-record.js';
import { downloadBlob } from './blobs.js';
import { Registries, type RegistryOptions } from './client.js';
import { DigestMismatchError, ManifestInvalidError } from './errors.js';
import { referenceOf, resolveRemoteImage } from './remote.js';

export type PullEvent =
  | { type: 'resolving'; reference: Reference }
  | { type: 'resolved'; reference: Reference; digest: Digest; manifestDigest: Digest; layers: Digest[] }
  | { type: 'blob'; digest: Digest; status: 'exists' | 'downloading' | 'resumed' | 'done'; kind: 'layer' | 'config'; size: number };

export interface PullOptions extends RegistryOptions {
  /** `linux/arm64` or a Platform; default: this host. */
  platform?: string | Platform;
  /** Blobs downloaded at once (default 3, as docker). */
  concurrency?: number;
  /** A shared client pool (kept open); by default one is made and closed for this pull. */
  registries?: Registries;
  /** The caller's lease (a build pulling its base image); by default a lease for the pull alone. */
  lease?: Lease;
  onEvent?: (event: PullEvent) => void;
  /** Bytes of a blob received so far, after every chunk of its download (callers throttle what they show). */
  onBytes?: (blob: { digest: Digest; size: number; kind: 'layer' | 'config' }, received: number) => void;
}

export interface PullResult {
  /** The name the store records (`127.0.0.1:5000/app:1`, or `repo@sha256:…` for a digest pull). */
  name: string;
  reference: Reference;
  /** The digest the reference resolved to in the registry (an index's when it named one). */
  digest: Digest;
  /** The stored image manifest's digest (the image ID). */
  manifestDigest: Digest;
  image: LayoutImage;
  /** Blobs actually downloaded (0 when the store had everything). */
  downloaded: number;
  /** The name already pointed at this image before the pull. */
  upToDate: boolean;
}

/** Pulls `ref` into `store` and names it; see the module comment for the guarantees. */
export async function pullImage(ref: string | Reference, store: Store, opts: PullOptions = {}): Promise<PullResult> {
  const reference = referenceOf(ref);
  const registries = opts.registries ?? new Registries(opts);
  const emit = opts.onEvent ?? (() => undefined);
  const platform = typeof opts.platform === 'string' ? parsePlatform(opts.platform) : opts.platform;
  const lease = opts.lease ?? (await store.createLease({ label: `pull ${repositoryName(reference)}` }));
  try {
    const client = registries.get(reference.domain);
    const repository = reference.path;
    emit({ type: 'resolving', reference });
    const { image, indexes } = await resolveRemoteImage(client, repository, reference.digest ?? reference.tag ?? 'latest', platform);
    const manifestDigest = image.fetched.digest;
    const digest = indexes[0]?.fetched.digest ?? manifestDigest;
    const manifest = image.fetched.doc.manifest;
    emit({ type: 'resolved', reference, digest, manifestDigest, layers: manifest.layers.map((l) => l.digest) });
    const record = await BlobRecord.open(store.root, store.tmpDir);
    let downloaded = 0;

    const fetchBlob = async (desc: { digest: Digest; size: number }, kind: 'layer' | 'config'): Promise<void> => {
      record.add(desc.digest, reference.domain, repository);
      if (await store.hasBlob(desc.digest)) {
        await lease.add(desc.digest);
        emit({ type: 'blob', digest: desc.digest, status: 'exists', kind, size: desc.size });
        return;
      }
      emit({ type: 'blob', digest: desc.digest, status: 'downloading', kind, size: desc.size });
      const stream = downloadBlob(client, repository, desc, {
        onResume: () => emit({ type: 'blob', digest: desc.digest, status: 'resumed', kind, size: desc.size }),
        ...(opts.onBytes ? { onProgress: (received: number) => opts.onBytes?.({ digest: desc.digest, size: desc.size, kind }, received) } : {}),
      });
      try {
        await store.writeBlob(stream, { expected: desc, lease });
      } catch (err) {
        if (err instanceof BlobVerificationError) {
          throw new DigestMismatchError(`blob ${desc.digest} of ${repository} does not match its descriptor`, { registry: client.registry }, { cause: err });
        }
        throw err;
      } finally {
        stream.destroy();
      }
      downloaded++;
      emit({ type: 'blob', digest: desc.digest, status: 'done', kind, size: desc.size });
    };

    // The config first: it says how many layers there must be, before any layer is fetched.
    await fetchBlob(manifest.config, 'config');
    let config: ImageConfig;
    try {
      config = JSON.parse((await store.readBlob(manifest.config)).toString('utf8')) as ImageConfig;
    } catch {
      throw new ManifestInvalidError(`the config of ${repositoryName(reference)}@${manifestDigest} is not JSON`, { registry: client.registry });
    }
    if (!config?.rootfs || !Array.isArray(config.rootfs.diff_ids) || config.rootfs.diff_ids.length !== manifest.layers.length) {
      throw new ManifestInvalidError(
        `${repositoryName(reference)}@${manifestDigest} lists ${manifest.layers.length} layers but its config has ${config?.rootfs?.diff_ids?.length ?? 'no'} diff_ids`,
        { registry: client.registry },
      );
    }

    const limit = pLimit(opts.concurrency ?? 3);
    const seen = new Set<Digest>();
    await Promise.all(
      manifest.layers
        .filter((l) => !seen.has(l.digest) && seen.add(l.digest))
        .map((l) => limit(() => fetchBlob(l, 'layer'))),
    );

    await store.writeBlob(image.fetched.raw, { expected: { digest: manifestDigest, size: image.fetched.raw.length }, lease });
    const name = reference.digest ? `${repositoryName(reference)}@${manifestDigest}` : `${repositoryName(reference)}:${reference.tag ?? 'latest'}`;
    let before: Digest | undefined;
    try {
      before = (await store.lookup(name)).digest;
    } catch {
      before = undefined;
    }
    const stored = await store.resolve(manifestDigest);
    await store.putImage(stored, { names: [name], lease });
    await record.save().catch(() => undefined);
    return { name, reference, digest, manifestDigest, image: stored, downloaded, upToDate: before === manifestDigest && downloaded === 0 };
  } finally {
    if (!opts.lease) await lease.release();
    if (!opts.registries) await registries.close();
  }
}
