/**
 * The build context as BuildKit receives it: the filtered walk (`./ignore`'s fsutil-exact `walk`)
 * materialised as a tree, which is what its checksums, wildcard expansion and symlink resolution
 * operate on. What the ignore rules leave out simply does not exist here, exactly as it does not
 * exist on the BuildKit side; symlinks are entries with a target and are never followed while
 * scanning.
 */
import { readlinkSync, type Stats } from 'node:fs';
import { InputFileError } from '../errors.js';
import type { Digest } from '../oci/digest.js';
import { entryTypeOf, type EntryType } from './checksum.js';
import { compareNames } from './ignore/gopath.js';
import { walkSync, walkUnfiltered, type WalkFilter } from './ignore/index.js';

/**
 * The parts of an `lstat` the checksums need. Nodes keep these numbers rather than the `Stats`
 * object: under Node 20 each `Stats` carries four `Date` objects, and keeping 20,000 of them alive
 * makes a big scan mostly garbage-collector work.
 */
export interface StatLike {
  readonly dev: number;
  readonly ino: number;
  readonly mode: number;
  readonly size: number;
  readonly rdev: number;
  readonly mtimeMs: number;
  readonly ctimeMs: number;
}

/** The children of every node that is not a directory (frozen: nothing is ever added to it). */
const NO_CHILDREN: ContextNode[] = Object.freeze([]) as unknown as ContextNode[];

export class ContextNode implements StatLike {
  /** Filled in by the scanner for directories, sorted by name (UTF-8 byte order); empty for the rest. */
  readonly children: ContextNode[];
  /** Checksum of this entry; for a directory, the recursive one. */
  digest: Digest | undefined;
  /** Directories and symlinks: the digest of their own header. */
  header: Digest | undefined;
  /** A content hash in progress (regular files), shared by concurrent callers. */
  pending: Promise<void> | undefined;
  /** Index key (device and inode) from the full-precision stat taken when the digest was sought. */
  key: string | undefined;

  // The entry's lstat as the walk saw it.
  readonly dev: number;
  readonly ino: number;
  readonly mode: number;
  readonly size: number;
  readonly rdev: number;
  readonly mtimeMs: number;
  readonly ctimeMs: number;

  constructor(
    /** Relative to the context root, `/`-separated; `''` for the root. */
    readonly path: string,
    readonly name: string,
    readonly type: EntryType,
    st: StatLike,
    /** Symlinks: the target as stored (decoded as UTF-8) and its raw bytes. */
    readonly target?: string,
    readonly targetBytes?: Buffer,
  ) {
    // Only directories get a list of their own: a big context is mostly files.
    this.children = type === 'dir' ? [] : NO_CHILDREN;
    this.dev = st.dev;
    this.ino = st.ino;
    this.mode = st.mode;
    this.size = st.size;
    this.rdev = st.rdev;
    this.mtimeMs = st.mtimeMs;
    this.ctimeMs = st.ctimeMs;
  }
}

export interface ContextTree {
  readonly root: ContextNode;
  /** Every node by path, in walk (pre-)order; the root under `''`. */
  readonly byPath: ReadonlyMap<string, ContextNode>;
}

/**
 * Walks `realRoot` through `filter` and builds the tree.
 * @param rootStats stat of the context root itself.
 * @param onFile called with each regular file as soon as the walk reports it.
 * @throws InputFileError or IgnorePatternError as the walk does, and when a symlink cannot be read.
 */
export async function scanContext(
  realRoot: string,
  rootStats: Stats,
  filter: WalkFilter,
  onFile?: (node: ContextNode) => void,
): Promise<ContextTree> {
  const root = new ContextNode('', '', 'dir', rootStats);
  const byPath = new Map<string, ContextNode>([['', root]]);
  const add = (parent: ContextNode, path: string, name: string, stats: Stats): ContextNode => {
    const type = entryTypeOf(stats.mode);
    let node: ContextNode;
    if (type === 'symlink') {
      let raw: Buffer;
      try {
        raw = readlinkSync(`${realRoot}/${path}`, { encoding: 'buffer' });
      } catch (err) {
        throw new InputFileError(path, `cannot read symlink: ${(err as Error).message}`, { cause: err });
      }
      node = new ContextNode(path, name, type, stats, raw.toString('utf8'), raw);
    } else {
      node = new ContextNode(path, name, type, stats);
    }
    // The walk descends by what the listing said; a directory replaced meanwhile is not one now.
    if (parent.type !== 'dir') throw new InputFileError(parent.path, 'changed while the build was reading the context');
    parent.children.push(node);
    byPath.set(path, node);
    if (type === 'file') onFile?.(node);
    return node;
  };
  if (!filter.include && !filter.exclude) {
    // No ignore rules: the plain walk, without the filter's generators (a big context's no-op
    // rebuild is mostly this walk). It lists each directory in name order already.
    walkUnfiltered(realRoot, root, add);
    return { root, byPath };
  } else {
    for (const e of walkSync(realRoot, filter)) {
      const slash = e.path.lastIndexOf('/');
      const parent = byPath.get(slash < 0 ? '' : e.path.slice(0, slash));
      // The walk reports parents before children, late-reported directories included.
      if (!parent) throw new Error(`context walk reported ${e.path} before its directory`);
      add(parent, e.path, e.path.slice(slash + 1), e.stats);
    }
  }
  for (const n of byPath.values()) {
    if (n.children.length > 1) n.children.sort((a, b) => compareNames(a.name, b.name));
  }
  return { root, byPath };
}

/**
 * All nodes below `node` (not itself) in pre-order: a directory, then its children by name. An array,
 * not a generator: a no-op rebuild of a big context goes through every node, and resuming a
 * generator 20,000 times costs more than the array does.
 */
export function descendants(node: ContextNode): ContextNode[] {
  const out: ContextNode[] = [];
  const stack: Array<{ node: ContextNode; next: number }> = [{ node, next: 0 }];
  while (stack.length > 0) {
    const top = stack[stack.length - 1]!;
    if (top.next >= top.node.children.length) {
      stack.pop();
      continue;
    }
    const child = top.node.children[top.next++]!;
    out.push(child);
    if (child.children.length > 0) stack.push({ node: child, next: 0 });
  }
  return out;
}
