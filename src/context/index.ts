/**
 * The build context: the directory a build reads its COPY and ADD sources from, filtered by
 * `.dockerignore` as BuildKit filters it, with BuildKit-compatible content checksums for cache keys
 * and a persistent stat cache that spares re-reading unchanged files.
 */
export {
  BuildContext,
  diffManifests,
  openContext,
  type ChecksumOptions,
  type ContextEntry,
  type ContextManifest,
  type ContextStats,
  type ManifestChanges,
  type OpenContextOptions,
} from './context.js';
export { EMPTY_DIGEST, type EntryType } from './checksum.js';
export {
  ContextPathNotFoundError,
  ContextPatternError,
  ContextSymlinkEscapeError,
  ContextSymlinkLoopError,
} from './errors.js';
export { findIgnoreFile, readIgnoreFile, type IgnoreFile } from './ignore/index.js';
