/**
 * The cache manifest: what `--cache-to type=registry|local` writes and `--cache-from` reads.
 *
 * An OCI image manifest whose config has kiln's media type and lists the exported steps, and whose
 * layers are the steps' layers, gzip-compressed as an image push would send them (so a cache and
 * an image built from the same steps share blobs), followed by one blob per exported cache mount:
 *
 *   config  application/vnd.kiln.cache.config.v1+json
 *     { version,
 *       records: [{ key, record, step, empty, layer, diffID, size, chain }],
 *       mounts:  [{ id, layer, size }] }
 *   layers  [gzip step layers..., cache-mount tars...]
 *
 * `key` is the step's cache-key digest and `record` the key record it hashes (so a miss can still
 * be explained against it); `layer` indexes the manifest's layers; `size` is the uncompressed size
 * (the store keeps layers uncompressed). `chain` is the filesystem after the step, base first: the
 * diffIDs of every layer below, with the manifest index of those the cache holds.
 *
 * Inline cache (`--cache-to type=inline`) puts the same records, with `layer` indexing the image's
 * own layers, in the image config's `kiln.cache.v0` field, as BuildKit's `moby.buildkit.cache.v0`.
 */
import type { Digest } from '../oci/digest.js';
import { isDigest } from '../oci/digest.js';

export const CacheMediaType = {
  config: 'application/vnd.kiln.cache.config.v1+json',
  /** A cache mount's contents: a gzip tar of the mount's directory. */
  mount: 'application/vnd.kiln.cache.mount.v1.tar+gzip',
} as const;

/** The image config field holding inline cache records. */
export const INLINE_CACHE_FIELD = 'kiln.cache.v0';

export interface CacheRecordEntry {
  key: Digest;
  record: unknown;
  step: string;
  empty: boolean;
  layer: number;
  diffID: Digest;
  size: number;
  chain: Array<{ diffID: Digest; layer?: number }>;
  /** The key the steps after this one build on, when not `key` (a COPY --from=STAGE's content key). */
  resultKey?: Digest;
}

export interface CacheMountEntry {
  id: string;
  layer: number;
  /** Bytes of the files in the mount (the uncompressed tar is a little larger). */
  size: number;
}

export interface CacheConfig {
  version: 1;
  records: CacheRecordEntry[];
  mounts: CacheMountEntry[];
}

/** A cache config read from outside, checked enough that lookups cannot trip over it. */
export function parseCacheConfig(raw: unknown, layerCount: number): CacheConfig | undefined {
  if (!raw || typeof raw !== 'object') return undefined;
  const doc = raw as Partial<CacheConfig>;
  if (doc.version !== 1 || !Array.isArray(doc.records)) return undefined;
  const inRange = (i: unknown): i is number => Number.isInteger(i) && (i as number) >= 0 && (i as number) < layerCount;
  const records = doc.records.filter(
    (r): r is CacheRecordEntry =>
      !!r &&
      typeof r === 'object' &&
      isDigest(r.key) &&
      isDigest(r.diffID) &&
      inRange(r.layer) &&
      typeof r.size === 'number' &&
      typeof r.empty === 'boolean' &&
      (r.resultKey === undefined || isDigest(r.resultKey)),
  );
  const mounts = (Array.isArray(doc.mounts) ? doc.mounts : []).filter(
    (m): m is CacheMountEntry => !!m && typeof m === 'object' && typeof m.id === 'string' && m.id !== '' && inRange(m.layer),
  );
  return { version: 1, records, mounts };
}
