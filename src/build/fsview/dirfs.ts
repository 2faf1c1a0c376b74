/**
 * A plain directory (the build context, a git checkout, a download) seen through the same interface
 * as a layered view, with the rules BuildKit applies to a context it has received:
 *
 *  - ignored paths (.dockerignore) are absent; a directory the patterns exclude is still present
 *    when an exception (`!pattern`) re-includes something inside it, as BuildKit's filtered walk
 *    sends such a directory;
 *  - ownership is reported as 0:0 (BuildKit's client resets uid/gid of everything it sends);
 *  - symlinks are resolved inside the directory, and a link that leads out of it (absolute target,
 *    or `..` above the root) is refused with OutsideRootError naming the link.
 */
import type { Stats } from 'node:fs';
import { promises as fsp } from 'node:fs';
import { join, resolve as resolveHost } from 'node:path';
import { compareNames } from '../../context/ignore/gopath.js';
import { WalkFilter, type FilterOptions } from '../../context/ignore/walk.js';
import { STAT_CONCURRENCY, mapLimit } from './concurrency.js';
import { FSViewError } from './errors.js';
import { HostTree, lstatOrUndefined } from './host-tree.js';
import { baseOf, cleanAbs, components, joinAbs } from './paths.js';
import { resolveInTree, type RawNode } from './resolve.js';
import { entryFromStats, type FSEntry, type ResolveOptions } from './types.js';

export interface DirFSOptions {
  /** Used in messages (default "build context"). */
  label?: string;
  /** Ignore rules already in force for this directory (a WalkFilter, or patterns to build one). */
  ignore?: WalkFilter | FilterOptions;
  /** `root` (default): report every entry as owned by 0:0, as BuildKit does for the context; `keep`: the host's owners. */
  owner?: 'root' | 'keep';
}

export class DirFS extends HostTree {
  readonly label: string;
  readonly root: string;
  private readonly filter: WalkFilter | undefined;
  private readonly owner: { uid: number; gid: number } | undefined;
  /** Whether a filter may hide a directory that still has visible content. */
  private readonly scanHidden: boolean;
  private readonly dirVisibility = new Map<string, Promise<boolean>>();

  constructor(root: string, options: DirFSOptions = {}) {
    super();
    this.root = resolveHost(root);
    this.label = options.label ?? 'build context';
    const ignore = options.ignore;
    this.filter = ignore === undefined ? undefined : ignore instanceof WalkFilter ? ignore : new WalkFilter(ignore);
    if (this.filter && !this.filter.include && !this.filter.exclude) this.filter = undefined;
    this.owner = (options.owner ?? 'root') === 'root' ? { uid: 0, gid: 0 } : undefined;
    this.scanHidden = this.filter !== undefined && (this.filter.include !== undefined || (this.filter.exclude?.exclusions() ?? false));
  }

  async lstatPhysical(path: string): Promise<FSEntry | undefined> {
    const clean = cleanAbs(path);
    const host = this.hostPath(clean);
    const st = await lstatOrUndefined(host);
    if (!st) return undefined;
    if (clean !== '/') {
      if (!(await this.parentsAreDirs(clean))) return undefined;
      if (!(await this.visible(clean, st))) return undefined;
    }
    return entryFromStats(clean, baseOf(clean), st, host, this.owner);
  }

  async readdir(path: string): Promise<string[]> {
    return (await this.entries(path)).map((e) => e.name);
  }

  async entries(path: string): Promise<FSEntry[]> {
    const dir = await this.dirAt(path);
    let names: string[];
    try {
      names = await fsp.readdir(this.hostPath(dir));
    } catch (err) {
      throw new FSViewError('EIO', dir, `cannot list (${(err as Error).message})`, { cause: err });
    }
    names.sort(compareNames);
    const entries = await mapLimit(names, STAT_CONCURRENCY, async (name) => {
      const childPath = joinAbs(dir, name);
      const host = join(this.hostPath(dir), name);
      const st = await lstatOrUndefined(host);
      if (!st || !(await this.visible(childPath, st))) return undefined;
      return entryFromStats(childPath, name, st, host, this.owner);
    });
    return entries.filter((e): e is FSEntry => e !== undefined);
  }

  resolve(path: string, options: ResolveOptions = {}): Promise<string> {
    return resolveInTree(path, options.followFinal ?? false, { raw: (p) => this.raw(p), confinedLabel: this.label });
  }

  // -- internals ---------------------------------------------------------------------------------

  private hostPath(clean: string): string {
    return clean === '/' ? this.root : join(this.root, ...components(clean));
  }

  private async raw(path: string): Promise<RawNode | undefined> {
    const entry = await this.lstatPhysical(path);
    if (!entry) return undefined;
    const host = entry.hostPath;
    return {
      isSymlink: entry.type === 'symlink',
      readlink: () => fsp.readlink(host),
    };
  }

  /**
   * A literal path only names something when each component before the last is a real directory:
   * the host would follow a symlink there, the view must not.
   */
  private async parentsAreDirs(clean: string): Promise<boolean> {
    const parts = components(clean);
    let host = this.root;
    for (let i = 0; i < parts.length - 1; i++) {
      host = join(host, parts[i]!);
      const st = await lstatOrUndefined(host);
      if (!st?.isDirectory()) return false;
    }
    return true;
  }

  private async dirAt(path: string): Promise<string> {
    const resolved = await this.resolve(path, { followFinal: true });
    const entry = await this.lstatPhysical(resolved);
    if (!entry) throw new FSViewError('ENOENT', cleanAbs(path), 'no such file or directory');
    if (entry.type !== 'directory') throw new FSViewError('ENOTDIR', cleanAbs(path), 'not a directory');
    return resolved;
  }

  /** Whether the ignore rules let `path` (an existing entry) be seen. */
  private async visible(path: string, st: Stats): Promise<boolean> {
    if (!this.filter || path === '/') return true;
    const rel = path.slice(1);
    if (this.filter.allows(rel)) return true;
    if (!st.isDirectory() || !this.scanHidden) return false;
    let pending = this.dirVisibility.get(path);
    if (!pending) {
      pending = this.hasVisibleContent(path);
      this.dirVisibility.set(path, pending);
    }
    return pending;
  }

  /** An excluded directory still shows when something below it is re-included. */
  private async hasVisibleContent(dir: string): Promise<boolean> {
    let names: string[];
    try {
      names = await fsp.readdir(this.hostPath(dir));
    } catch {
      return false;
    }
    for (const name of names) {
      const child = joinAbs(dir, name);
      const st = await lstatOrUndefined(this.hostPath(child));
      if (st && (await this.visible(child, st))) return true;
    }
    return false;
  }
}
