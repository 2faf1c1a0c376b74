/** COPY and ADD with BuildKit's semantics, producing the step's layer directly (no mounts). */
export { copyLayer, type CopyLayer } from './layer.js';
export { ContextFS } from './context-fs.js';
export { normalizeDest, planCopy } from './plan.js';
export type { CopyOptions, CopyPlan, CopyRequest, CopyWarning } from './types.js';
export { applyChmod, createdDirMode, parseChmod, type ChmodSpec } from './chmod.js';
export { containsWildcards, goMatch, splitWildcards } from './match.js';
export { classifySource, parseGitRef, urlFileName, type GitRef, type SourceKind } from './sources.js';
export { archiveCompression, detectArchiveCompression, isTarHeader, type ArchiveCompression } from './archive.js';
export { parseChecksumDigest } from './http.js';
export {
  ChecksumMismatchError,
  CopyError,
  MissingToolError,
  SourceNotFoundError,
  UnsafeArchiveError,
} from './errors.js';
