/** kiln's image store: OCI layout + leases + snapshots + garbage collection. */
export { CompressedMappings, type CompressedRecord, type LayerCompression } from './compressed.js';
export { AmbiguousImageError, ImageConflictError, ImageNotFoundError, StoreError, StoreLockError } from './errors.js';
export type { GcResult } from './gc.js';
export { defaultLayerCodec, type LayerCodec } from './layer-codec.js';
export { Lease, leaseExpired, type CreateLeaseOptions, type LeaseRecord } from './leases.js';
export type { StoreLockOptions } from './lock.js';
export { defaultStoreRoot, isRealRoot } from './root.js';
export { SHORT_LINK_LENGTH, removeTree, type Snapshot } from './snapshots.js';
export {
  Store,
  StoreAnnotation,
  findByReference,
  lookupIn,
  openStore,
  recordsOf,
  setNames,
  type DiskUsage,
  type ImageRecord,
  type LowerDirs,
  type OpenStoreOptions,
  type PruneResult,
  type RemoveResult,
} from './store.js';
export { BuildCacheRecords, type BuildCacheRecord } from './build-cache.js';
