/** The read-only file tree interface shared by layered rootfs views and plain directories. */
import type { FileHandle } from 'node:fs/promises';
import type { Stats } from 'node:fs';

export type FileType = 'file' | 'directory' | 'symlink' | 'fifo' | 'char-device' | 'block-device' | 'socket';

/** What a tree shows at one path: the lstat of the host file behind it, in the view's terms. */
export interface FSEntry {
  /** Absolute, clean path inside the view (`/` for the root). */
  path: string;
  /** Last path component ('' for the root). */
  name: string;
  type: FileType;
  /** Permission bits with setuid, setgid and sticky (`st_mode & 0o7777`). */
  mode: number;
  uid: number;
  gid: number;
  size: number;
  mtimeMs: number;
  nlink: number;
  dev: number;
  ino: number;
  rdev: number;
  /** The host file that holds this entry's content, metadata and xattrs. */
  hostPath: string;
}

export interface ResolveOptions {
  /** Follow a symlink in the last component too (default false). */
  followFinal?: boolean;
}

/**
 * A read-only tree addressed by absolute, `/`-separated paths. Paths are cleaned lexically first
 * (`..` never climbs above the root); symlinks met on the way are followed inside the tree, never on
 * the host.
 */
export interface ReadOnlyFS {
  /** A short description for messages ("build context", "stage build"). */
  readonly label: string;
  /** The entry at `path` (intermediate symlinks followed, the last component not); undefined when nothing is there. */
  lstat(path: string): Promise<FSEntry | undefined>;
  /**
   * The entry at a path taken literally: every component must be a real directory of the tree (a
   * symlink in the middle means "nothing here"). For paths that are already resolved.
   */
  lstatPhysical(path: string): Promise<FSEntry | undefined>;
  /** Names in a directory (symlinks followed), sorted by their bytes as Go's os.ReadDir does. */
  readdir(path: string): Promise<string[]>;
  /** The entries of a directory, sorted like `readdir`. */
  entries(path: string): Promise<FSEntry[]>;
  readlink(path: string): Promise<string>;
  /** Content of a regular file (symlinks followed inside the tree). */
  readFile(path: string, options?: { maxBytes?: number }): Promise<Buffer>;
  /** Opens a regular file for reading (symlinks followed inside the tree). */
  open(path: string): Promise<FileHandle>;
  /** The path with symlinks resolved inside the tree; missing components are kept as written. */
  resolve(path: string, options?: ResolveOptions): Promise<string>;
}

/** The node type of an lstat result. */
export function fileTypeOf(st: Stats): FileType {
  if (st.isFile()) return 'file';
  if (st.isDirectory()) return 'directory';
  if (st.isSymbolicLink()) return 'symlink';
  if (st.isFIFO()) return 'fifo';
  if (st.isCharacterDevice()) return 'char-device';
  if (st.isBlockDevice()) return 'block-device';
  return 'socket';
}

export function entryFromStats(path: string, name: string, st: Stats, hostPath: string, owner?: { uid: number; gid: number }): FSEntry {
  return {
    path,
    name,
    type: fileTypeOf(st),
    mode: st.mode & 0o7777,
    uid: owner ? owner.uid : st.uid,
    gid: owner ? owner.gid : st.gid,
    size: st.size,
    mtimeMs: st.mtimeMs,
    nlink: st.nlink,
    dev: st.dev,
    ino: st.ino,
    rdev: st.rdev,
    hostPath,
  };
}

/** overlayfs whiteout: a character device 0/0. */
export function isWhiteout(st: Stats): boolean {
  return st.isCharacterDevice() && st.rdev === 0;
}
