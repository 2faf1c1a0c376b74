/** Read-only views of file trees: overlay snapshot stacks, plain directories, and their user databases. */
export { entryFromStats, fileTypeOf, isWhiteout, type FileType, type FSEntry, type ReadOnlyFS, type ResolveOptions } from './types.js';
export { FSViewError, LayerDirError, OutsideRootError, type FSErrno } from './errors.js';
export { LayeredFS, type LayeredFSOptions } from './layered.js';
export { DirFS, type DirFSOptions } from './dirfs.js';
export { MAX_SYMLINKS, resolveInTree, type RawNode, type ResolveContext } from './resolve.js';
export { ancestorsOf, baseOf, cleanAbs, components, isWithin, joinAbs, parentOf } from './paths.js';
export {
  UserLookupError,
  lookupGroup,
  lookupUser,
  parseGroup,
  parsePasswd,
  readGroup,
  readPasswd,
  type GroupEntry,
  type LookupUserOptions,
  type PasswdEntry,
  type ResolvedUser,
} from './users.js';
