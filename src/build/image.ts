/**
 * A stage's final state as an image in the store: the config (creation time, labels, diffIDs,
 * history times) and the manifest (with the created and base-image annotations) are written as
 * verified blobs; the layers are already there. The result is a stored Image value that exporters
 * and `putImage` take like any other.
 */
import type { Lease, Store } from '../store/index.js';
import { imageFor, type LayoutImage } from '../oci/layout/index.js';
import { MediaType } from '../oci/mediatypes.js';
import { Annotation, type HistoryEntry, type ImageConfig, type Manifest } from '../oci/types.js';
import type { Digest } from '../oci/digest.js';
import type { StageState } from './state.js';
import { dockerOCIImage } from './image-config.js';

export interface StoredImage {
  image: LayoutImage;
  digest: Digest;
  configDigest: Digest;
  config: ImageConfig;
  manifest: Manifest;
  size: number;
}

export interface ImageOptions {
  /** RFC 3339 creation time (`SOURCE_DATE_EPOCH`); default the newest history entry's. */
  created?: string;
  labels?: Record<string, string>;
  /** Extra top-level config fields (inline build cache: `kiln.cache.v0`). */
  configFields?: Record<string, unknown>;
  lease?: Lease;
}

export async function stateImage(store: Store, state: StageState, options: ImageOptions = {}): Promise<StoredImage> {
  const history = fillHistoryTimes(state.image.config.history ?? []);
  // The image was created when its newest history entry was: a fully cached rebuild gives the same
  // config, hence the same image ID, as BuildKit's does.
  const created = options.created ?? history.findLast((h) => h.created)?.created;
  const config = dockerOCIImage({ ...state.image.config, ...(created ? { created } : {}), history });
  config.rootfs = { type: 'layers', diff_ids: state.layers.map((l) => l.diffID) };
  if (options.labels && Object.keys(options.labels).length) {
    config.config = { ...config.config, Labels: { ...config.config?.Labels, ...options.labels } };
  }
  const rawConfig = Buffer.from(JSON.stringify(options.configFields ? { ...config, ...options.configFields } : config));
  const configBlob = await store.writeBlob(rawConfig, options.lease ? { lease: options.lease } : {});
  const annotations: Record<string, string> = created ? { [Annotation.created]: created } : {};
  if (state.base) {
    annotations[Annotation.baseName] = state.base.name;
    annotations[Annotation.baseDigest] = state.base.digest;
  }
  const manifest: Manifest = {
    schemaVersion: 2,
    mediaType: MediaType.ociManifest,
    config: { mediaType: MediaType.ociConfig, digest: configBlob.digest, size: configBlob.size },
    layers: state.layers.map((l) => l.desc),
    annotations,
  };
  const rawManifest = Buffer.from(JSON.stringify(manifest));
  const manifestBlob = await store.writeBlob(rawManifest, options.lease ? { lease: options.lease } : {});
  const image = await imageFor(store.layout, { digest: manifestBlob.digest, size: manifestBlob.size, mediaType: MediaType.ociManifest });
  return { image, digest: manifestBlob.digest, configDigest: configBlob.digest, config, manifest, size: manifestBlob.size };
}

/**
 * Gives every history entry a time, as BuildKit's exporter does: metadata entries (ENV, LABEL, ...)
 * have none of their own. The first of them take the time of the first new layer after them, so
 * they do not look as old as the base image (or, with no new layer, the latest time before them);
 * later ones take the time of the latest layer before them.
 */
export function fillHistoryTimes(history: readonly HistoryEntry[]): HistoryEntry[] {
  const firstUntimed = history.findIndex((h) => !h.created);
  if (firstUntimed < 0) return history.map((h) => ({ ...h }));
  let fill = history.slice(firstUntimed + 1).find((h) => h.created)?.created ?? history.slice(0, firstUntimed).findLast((h) => h.created)?.created;
  return history.map((h, i) => {
    if (h.created) {
      if (i > firstUntimed) fill = h.created;
      return { ...h };
    }
    return fill ? { created: fill, ...h } : { ...h };
  });
}
