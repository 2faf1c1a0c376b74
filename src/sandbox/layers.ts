/**
 * The merged view of an overlay stack, read without mounting it: which layer a path comes from,
 * following overlay's rules (upper over lowers, whiteouts hide, opaque directories stop the merge),
 * and symlinks resolved inside the image root the way runc's securejoin does (an absolute link or a
 * `..` never leaves the rootfs).
 *
 * kiln needs this before the RUN starts, because the overlay is only mounted inside the sandbox's own
 * mount namespace: to find the image's /etc/passwd for USER, to resolve mount targets through the
 * image's symlinks (mount(8) would follow an absolute link to a *host* path), and to create mount
 * points and the working directory in the upper dir. Mount points kiln creates are recorded and
 * removed after the step, so they never reach the layer, as BuildKit does with its mount stubs.
 */
import { lstatSync, lutimesSync, mkdirSync, readFileSync, readlinkSync, rmdirSync, type Stats, chmodSync, lchownSync, writeFileSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { getAttributeSync, listAttributesSync, setAttributeSync } from '@napi-rs/xattr';
import { RunMountError } from './errors.js';

export interface Found {
  /** Index into the stack (0 = topmost). */
  layer: number;
  stat: Stats;
}

export interface Resolved {
  /** The path inside the rootfs with every symlink resolved (no leading slash; [] is the root). */
  components: string[];
  /** The entry at that path, if it exists. */
  found: Found | undefined;
}

const MAX_SYMLINKS = 40;

function isWhiteout(st: Stats): boolean {
  return st.isCharacterDevice() && st.rdev === 0;
}

function lstatOrUndefined(path: string): Stats | undefined {
  try {
    return lstatSync(path, { throwIfNoEntry: false });
  } catch (err) {
    // ENOTDIR: a parent is not a directory in this layer, which for a lookup means "not here".
    if ((err as NodeJS.ErrnoException).code === 'ENOTDIR') return undefined;
    throw err;
  }
}

/** True when the directory carries overlay's opaque marker (either xattr namespace). */
export function isOpaqueDir(path: string): boolean {
  let names: string[];
  try {
    // Listing first: most directories have no xattrs, and a failed get costs an exception.
    names = listAttributesSync(path);
  } catch {
    return false;
  }
  for (const name of names) {
    if (name !== 'user.overlay.opaque' && name !== 'trusted.overlay.opaque') continue;
    try {
      if (getAttributeSync(path, name)?.toString('latin1') === 'y') return true;
    } catch {
      // unreadable (trusted.* as a user)
    }
  }
  return false;
}

export class LayerStack {
  private rootDirs: number[] | undefined;

  /** @param layers directories, topmost first (the upper dir, then the lowers in overlay order). */
  constructor(readonly layers: string[]) {}

  /** The layers contributing to the root directory: an opaque root hides every layer under it. */
  private roots(): number[] {
    if (!this.rootDirs) {
      const all = this.layers.map((_, i) => i);
      const opaque = all.findIndex((i) => isOpaqueDir(this.layers[i]!));
      this.rootDirs = opaque >= 0 ? all.slice(0, opaque + 1) : all;
    }
    return this.rootDirs;
  }

  /** The entry at `components` (no symlinks followed), or undefined when the merged view has none. */
  lookup(components: string[]): Found | undefined {
    let dirs = this.roots();
    if (components.length === 0) {
      const i = dirs[0]!;
      return { layer: i, stat: lstatSync(this.layers[i]!) };
    }
    let found: Found | undefined;
    for (let c = 0; c < components.length; c++) {
      const rel = components.slice(0, c + 1).join('/');
      found = undefined;
      const next: number[] = [];
      for (const i of dirs) {
        const path = join(this.layers[i]!, rel);
        const st = lstatOrUndefined(path);
        if (!st) continue;
        if (isWhiteout(st)) break;
        if (!found) {
          found = { layer: i, stat: st };
          if (!st.isDirectory()) break;
          next.push(i);
          if (isOpaqueDir(path)) break;
          continue;
        }
        if (!st.isDirectory()) break;
        next.push(i);
        if (isOpaqueDir(path)) break;
      }
      if (!found) return undefined;
      if (c < components.length - 1 && !found.stat.isDirectory()) return undefined;
      dirs = next;
    }
    return found;
  }

  /** Host path of a found entry. */
  hostPath(found: Found, components: string[]): string {
    return join(this.layers[found.layer]!, ...components);
  }

  /**
   * Resolves `path` (absolute inside the rootfs) through the image's symlinks, never leaving the
   * root. `followLast` also resolves a symlink in the last component.
   */
  resolve(path: string, followLast = true): Resolved {
    let rest = split(path);
    let done: string[] = [];
    let links = 0;
    while (rest.length) {
      const part = rest.shift()!;
      if (part === '.') continue;
      if (part === '..') {
        done.pop();
        continue;
      }
      const candidate = [...done, part];
      const found = this.lookup(candidate);
      if (found?.stat.isSymbolicLink() && (rest.length > 0 || followLast)) {
        if (++links > MAX_SYMLINKS) throw new RunMountError(`too many levels of symbolic links resolving ${path} in the image`);
        const target = readlinkSync(this.hostPath(found, candidate), 'utf8');
        if (target.startsWith('/')) done = [];
        rest = [...split(target), ...rest];
        continue;
      }
      if (found && rest.length > 0 && !found.stat.isDirectory() && !found.stat.isSymbolicLink()) {
        throw new RunMountError(`${path}: /${candidate.join('/')} in the image is not a directory`);
      }
      // A missing component is kept as it is (it will be created), and resolution goes on, as
      // securejoin does: a later `..` may lead back to existing paths.
      done = candidate;
    }
    return { components: done, found: done.length === 0 ? this.lookup([]) : this.lookup(done) };
  }

  /** The content of a regular file in the merged view (symlinks resolved), or undefined. */
  readFile(path: string): Buffer | undefined {
    let r: Resolved;
    try {
      r = this.resolve(path);
    } catch {
      return undefined;
    }
    if (!r.found || !r.found.stat.isFile()) return undefined;
    return readFileSync(this.hostPath(r.found, r.components));
  }
}

function split(path: string): string[] {
  return path.split('/').filter((p) => p !== '');
}

type Created =
  | { kind: 'dir'; path: string }
  | { kind: 'copied-dir'; path: string; lower: Stats }
  | { kind: 'file'; path: string };

/**
 * Creates paths in the upper dir (index 0 of `stack`) before the step runs: mount points and the
 * working directory. Directories that exist in a lower layer are created with that layer's owner,
 * mode and xattrs, as overlay's own copy-up would, so the RUN sees the image's metadata.
 */
export class UpperPreparer {
  private readonly created: Created[] = [];
  private readonly times: Array<{ path: string; atime: Date; mtime: Date }> = [];

  constructor(private readonly stack: LayerStack) {}

  private get upper(): string {
    return this.stack.layers[0]!;
  }

  /**
   * Makes sure the directory `components` exists in the merged view, creating what is missing in the
   * upper dir (with copies of the lower parents it needs); `stub` marks what it creates for removal
   * after the step. A directory the image already has needs nothing: a mount covers it in place.
   */
  ensureDir(components: string[], stub: boolean): void {
    const existing = this.stack.lookup(components);
    if (existing?.stat.isDirectory()) return;
    this.ensureUpperDir(components, stub);
  }

  /** Makes sure the directory exists in the upper dir itself, as the parent of something created there. */
  private ensureUpperDir(components: string[], stub: boolean): void {
    for (let i = 1; i <= components.length; i++) {
      const prefix = components.slice(0, i);
      const path = join(this.upper, ...prefix);
      const inUpper = lstatOrUndefined(path);
      if (inUpper) {
        if (!inUpper.isDirectory()) throw new RunMountError(`/${prefix.join('/')} is not a directory`);
        continue;
      }
      const found = this.stack.lookup(prefix);
      if (found && !found.stat.isDirectory()) {
        throw new RunMountError(`/${prefix.join('/')} in the image is not a directory`);
      }
      if (found) {
        mkdirSync(path);
        copyMetadata(this.stack.hostPath(found, prefix), path, found.stat);
        this.times.push({ path, atime: found.stat.atime, mtime: found.stat.mtime });
        if (stub) this.created.push({ kind: 'copied-dir', path, lower: found.stat });
      } else {
        mkdirSync(path, { mode: 0o755 });
        chmodSync(path, 0o755);
        if (stub) this.created.push({ kind: 'dir', path });
      }
    }
  }

  /** Makes sure a file exists at `components` to mount a file onto (an empty stub when the image has none). */
  ensureFile(components: string[]): void {
    const found = this.stack.lookup(components);
    if (found) {
      if (found.stat.isDirectory()) throw new RunMountError(`/${components.join('/')} in the image is a directory, not a file`);
      // A file the image has is mounted over in place; nothing needs to exist in the upper dir.
      return;
    }
    this.ensureUpperDir(components.slice(0, -1), true);
    const path = join(this.upper, ...components);
    writeFileSync(path, '', { mode: 0o644 });
    this.created.push({ kind: 'file', path });
  }

  /** Puts back the times of copied directories (creating children changed them). */
  finish(): void {
    for (const t of this.times.reverse()) {
      try {
        lutimesSync(t.path, t.atime, t.mtime);
      } catch {
        // best effort: only the directory's mtime is at stake
      }
    }
  }

  /**
   * After the step: removes the stubs that are still what kiln made (empty, and for copied
   * directories with the lower layer's owner and mode), deepest first, so an untouched mount point
   * leaves nothing in the layer.
   */
  removeStubs(): void {
    for (const c of [...this.created].reverse()) {
      const st = lstatOrUndefined(c.path);
      if (!st) continue;
      try {
        if (c.kind === 'file') {
          if (st.isFile() && st.size === 0) unlinkSync(c.path);
          continue;
        }
        if (!st.isDirectory() || isOpaqueDir(c.path)) continue;
        if (c.kind === 'copied-dir' && ((st.mode & 0o7777) !== (c.lower.mode & 0o7777) || st.uid !== c.lower.uid || st.gid !== c.lower.gid)) continue;
        rmdirSync(c.path);
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code !== 'ENOTEMPTY' && code !== 'EEXIST' && code !== 'ENOENT') throw err;
      }
    }
  }
}

/** Gives `dst` the owner, mode and (non-overlay) xattrs of `src`. */
export function copyMetadata(src: string, dst: string, st: Stats): void {
  lchownSync(dst, st.uid, st.gid);
  if (!st.isSymbolicLink()) chmodSync(dst, st.mode & 0o7777);
  let names: string[] = [];
  try {
    names = listAttributesSync(src);
  } catch {
    return;
  }
  for (const name of names) {
    if (name.startsWith('user.overlay.') || name.startsWith('trusted.overlay.')) continue;
    try {
      const value = getAttributeSync(src, name);
      if (value) setAttributeSync(dst, name, value);
    } catch {
      // an attribute this file system or user cannot carry: overlay's copy-up would drop it too
    }
  }
}
