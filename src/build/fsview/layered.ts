/**
 * A read-only view of a stack of overlay snapshot directories, with overlayfs's lookup rules but
 * without mounting anything:
 *
 *  - layers are given topmost first; the first layer that has a name decides what it is;
 *  - a whiteout (character device 0/0) deletes the name from every layer below it;
 *  - a directory merges with same-named directories below it, until a layer where the name is not
 *    a directory (which hides the rest) or a directory marked opaque (`user.overlay.opaque=y`, or
 *    `trusted.overlay.opaque=y` from a root-mode overlay), below which nothing shows;
 *  - a merged directory's own metadata is that of its topmost copy.
 *
 * Symlinks are resolved inside the view: an absolute target starts again at the view's root and `..`
 * stops there, so nothing on the host outside the snapshots is ever reached.
 *
 * Directory lookups are cached by path (the cache is cleared past a size bound), so walking a tree
 * costs one lstat per name per layer that has it.
 */
import type { Dirent, Stats } from 'node:fs';
import { promises as fsp } from 'node:fs';
import { join } from 'node:path';
import { getAttributeSync } from '@napi-rs/xattr';
import { compareNames } from '../../context/ignore/gopath.js';
import { STAT_CONCURRENCY, mapLimit } from './concurrency.js';
import { FSViewError, LayerDirError } from './errors.js';
import { HostTree, lstatOrUndefined } from './host-tree.js';
import { baseOf, cleanAbs, joinAbs, parentOf } from './paths.js';
import { resolveInTree, type RawNode } from './resolve.js';
import { entryFromStats, isWhiteout, type FSEntry, type ResolveOptions } from './types.js';

/** One layer's copy of a directory. */
interface LayerDir {
  layer: number;
  host: string;
}

/** A directory of the merged view: its copies, topmost first, down to where lower ones are hidden. */
interface DirNode {
  path: string;
  dirs: LayerDir[];
}

/** What a name resolves to in one directory of the view. */
type Lookup = { kind: 'dir'; node: DirNode; stats: Stats } | { kind: 'leaf'; host: string; stats: Stats };

const OPAQUE_XATTRS = ['user.overlay.opaque', 'trusted.overlay.opaque'];
const DIR_CACHE_LIMIT = 20_000;

export interface LayeredFSOptions {
  /** Used in messages (default "image filesystem"). */
  label?: string;
}

export class LayeredFS extends HostTree {
  readonly label: string;
  readonly layers: readonly string[];
  private readonly dirCache = new Map<string, Promise<DirNode | undefined>>();
  private rootNode: Promise<DirNode> | undefined;

  /** `layers`: snapshot directories, topmost first (overlay's lowerdir order). */
  constructor(layers: readonly string[], options: LayeredFSOptions = {}) {
    super();
    this.layers = [...layers];
    this.label = options.label ?? 'image filesystem';
  }

  // -- public API -------------------------------------------------------------------------------

  async lstatPhysical(path: string): Promise<FSEntry | undefined> {
    const clean = cleanAbs(path);
    if (clean === '/') return this.rootEntry();
    const found = await this.lookup(clean);
    if (!found) return undefined;
    const host = found.kind === 'dir' ? found.node.dirs[0]!.host : found.host;
    return entryFromStats(clean, baseOf(clean), found.stats, host);
  }

  async readdir(path: string): Promise<string[]> {
    const node = await this.dirAt(path);
    return (await this.mergedNames(node)).map((n) => n.name);
  }

  async entries(path: string): Promise<FSEntry[]> {
    const node = await this.dirAt(path);
    const names = await this.mergedNames(node);
    return mapLimit(names, STAT_CONCURRENCY, async ({ name, host }) => {
      const childPath = joinAbs(node.path, name);
      const st = await lstatOrUndefined(host);
      if (!st) throw new FSViewError('EIO', childPath, 'vanished while the directory was read');
      return entryFromStats(childPath, name, st, host);
    });
  }

  resolve(path: string, options: ResolveOptions = {}): Promise<string> {
    return resolveInTree(path, options.followFinal ?? false, { raw: (p) => this.raw(p) });
  }

  // -- internals ---------------------------------------------------------------------------------

  private async raw(path: string): Promise<RawNode | undefined> {
    const found = await this.lookup(path);
    if (!found) return undefined;
    if (found.kind === 'leaf' && found.stats.isSymbolicLink()) {
      const host = found.host;
      return { isSymlink: true, readlink: () => fsp.readlink(host) };
    }
    return { isSymlink: false, readlink: () => Promise.reject(new Error('not a symlink')) };
  }

  private async rootEntry(): Promise<FSEntry> {
    const root = await this.root();
    const st = await fsp.lstat(root.dirs[0]!.host);
    return entryFromStats('/', '', st, root.dirs[0]!.host);
  }

  private root(): Promise<DirNode> {
    this.rootNode ??= (async () => {
      if (this.layers.length === 0) throw new LayerDirError('(none)', 'a layered view needs at least one layer directory');
      const dirs: LayerDir[] = [];
      for (let i = 0; i < this.layers.length; i++) {
        const host = this.layers[i]!;
        const st = await lstatOrUndefined(host);
        if (!st) throw new LayerDirError(host, 'layer directory does not exist');
        if (!st.isDirectory()) throw new LayerDirError(host, 'layer directory is not a directory');
        dirs.push({ layer: i, host });
        if (i < this.layers.length - 1 && isOpaque(host)) break;
      }
      return { path: '/', dirs };
    })();
    return this.rootNode;
  }

  /** The directory node at a physical path, or undefined when it is not a directory of the view. */
  private dirNode(path: string): Promise<DirNode | undefined> {
    if (path === '/') return this.root();
    const cached = this.dirCache.get(path);
    if (cached) return cached;
    const pending = (async () => {
      const parent = await this.dirNode(parentOf(path));
      if (!parent) return undefined;
      const found = await this.child(parent, baseOf(path));
      return found?.kind === 'dir' ? found.node : undefined;
    })();
    if (this.dirCache.size >= DIR_CACHE_LIMIT) this.dirCache.clear();
    this.dirCache.set(path, pending);
    pending.catch(() => this.dirCache.delete(path));
    return pending;
  }

  private async lookup(path: string): Promise<Lookup | undefined> {
    const parent = await this.dirNode(parentOf(path));
    if (!parent) return undefined;
    return this.child(parent, baseOf(path));
  }

  /** Looks a name up in a merged directory, layer by layer. */
  private async child(parent: DirNode, name: string): Promise<Lookup | undefined> {
    const path = joinAbs(parent.path, name);
    const dirs: LayerDir[] = [];
    let top: Stats | undefined;
    for (let i = 0; i < parent.dirs.length; i++) {
      const d = parent.dirs[i]!;
      const host = join(d.host, name);
      const st = await lstatOrUndefined(host);
      if (!st) continue;
      if (isWhiteout(st)) break;
      if (!st.isDirectory()) {
        // A non-directory on top is the answer; below a directory it is hidden.
        if (dirs.length === 0) return { kind: 'leaf', host, stats: st };
        break;
      }
      top ??= st;
      dirs.push({ layer: d.layer, host });
      if (i < parent.dirs.length - 1 && isOpaque(host)) break;
    }
    if (dirs.length === 0) return undefined;
    return { kind: 'dir', node: { path, dirs }, stats: top! };
  }

  private async dirAt(path: string): Promise<DirNode> {
    const resolved = await this.resolve(path, { followFinal: true });
    const node = await this.dirNode(resolved);
    if (node) return node;
    const entry = await this.lstatPhysical(resolved);
    if (entry) throw new FSViewError('ENOTDIR', cleanAbs(path), 'not a directory');
    throw new FSViewError('ENOENT', cleanAbs(path), 'no such file or directory');
  }

  /** The visible names of a merged directory with the host path of each one's topmost copy. */
  private async mergedNames(node: DirNode): Promise<Array<{ name: string; host: string }>> {
    const seen = new Map<string, string | null>();
    for (const d of node.dirs) {
      let list: Dirent[];
      try {
        list = await fsp.readdir(d.host, { withFileTypes: true });
      } catch (err) {
        throw new FSViewError('EIO', node.path, `cannot list layer directory ${d.host} (${(err as Error).message})`, { cause: err });
      }
      for (const dirent of list) {
        if (seen.has(dirent.name)) continue;
        const host = join(d.host, dirent.name);
        if (dirent.isCharacterDevice()) {
          const st = await lstatOrUndefined(host);
          if (st && isWhiteout(st)) {
            seen.set(dirent.name, null);
            continue;
          }
        }
        seen.set(dirent.name, host);
      }
    }
    const out: Array<{ name: string; host: string }> = [];
    for (const [name, host] of seen) if (host !== null) out.push({ name, host });
    out.sort((a, b) => compareNames(a.name, b.name));
    return out;
  }
}

function isOpaque(host: string): boolean {
  for (const name of OPAQUE_XATTRS) {
    try {
      const v = getAttributeSync(host, name);
      if (v && v.toString('latin1') === 'y') return true;
    } catch {
      // ENODATA, or trusted.* unreadable without privileges: not marked by that namespace
    }
  }
  return false;
}
