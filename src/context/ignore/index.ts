/**
 * .dockerignore handling with BuildKit's semantics: pattern matching (moby/patternmatcher), ignore
 * file reading and lookup (BuildKit's Dockerfile frontend), and the filtered walk of a build
 * context (tonistiigi/fsutil).
 */
export { IgnorePatternError } from './errors.js';
export {
  MatchInfo,
  Pattern,
  PatternMatcher,
  isValidGlob,
  matches,
  matchesOrParentMatches,
  translatePattern,
  type MatchType,
  type ParentMatchResult,
  type TranslatedPattern,
} from './patterns.js';
export { findIgnoreFile, readIgnoreFile, type IgnoreFile } from './ignorefile.js';
export {
  SKIP_DIR,
  WalkFilter,
  visitWalk,
  walk,
  walkSync,
  walkUnfiltered,
  type FilterOptions,
  type FilterSpec,
  type WalkEntry,
  type WalkReply,
} from './walk.js';
