/**
 * The destination side of a COPY: the stage's rootfs (read-only, never written) with the entries
 * the new layer will hold laid over it. Lookups see the planned entries first, so a later source of
 * the same instruction sees what an earlier one put there, as BuildKit's sequential file actions do.
 *
 * The finished plan lists every new node plus each ancestor directory of one: an ancestor the copy
 * did not create or change is listed with its existing mode, owner and time from the rootfs, so the
 * layer is complete on its own (as Docker's and BuildKit's differs write them) without altering it.
 */
import type { TarEntrySpec } from '../../oci/layer/index.js';
import {
  ancestorsOf,
  cleanAbs,
  components,
  resolveInTree,
  type FileType,
  type FSEntry,
  type RawNode,
  type ReadOnlyFS,
} from '../fsview/index.js';
import { CopyError } from './errors.js';

/** Metadata of directories created on the way to a destination. */
export interface DirMeta {
  mode: number;
  uid: number;
  gid: number;
}

export type PlannedOrigin = 'created' | 'copied' | 'existing';

export interface Planned {
  path: string;
  type: FileType;
  origin: PlannedOrigin;
  /** The tar entry, without its path. */
  spec: Omit<TarEntrySpec, 'path'>;
  /** Target of a planned symlink (for resolving later destinations through it). */
  linkname?: string;
}

/** What the destination shows at a path: a planned node, or one of the rootfs. */
export interface DestNode {
  type: FileType;
  planned?: Planned;
  entry?: FSEntry;
}

export class DestTree {
  private readonly planned = new Map<string, Planned>();

  /** `view`: the rootfs the layer goes on; undefined for scratch and for `--link`. */
  constructor(readonly view: ReadOnlyFS | undefined) {}

  get size(): number {
    return this.planned.size;
  }

  /** The node at a physical (already resolved) path. */
  async lookup(path: string): Promise<DestNode | undefined> {
    if (path === '/') return { type: 'directory' };
    const p = this.planned.get(path);
    if (p) return { type: p.type, planned: p };
    // Below a planned non-directory there is nothing, whatever the rootfs had.
    for (const a of ancestorsOf(path)) {
      const pa = this.planned.get(a);
      if (pa && pa.type !== 'directory') return undefined;
    }
    const entry = this.view ? await this.view.lstatPhysical(path) : undefined;
    return entry ? { type: entry.type, entry } : undefined;
  }

  /** Resolves symlinks of the destination inside the rootfs (never on the host). */
  resolve(path: string, followFinal: boolean): Promise<string> {
    return resolveInTree(path, followFinal, { raw: (p) => this.raw(p) });
  }

  /** Like `resolve`, but with `root` as the tree's root (archive extraction's chroot). */
  resolveUnder(root: string, path: string, followFinal: boolean): Promise<string> {
    const under = (p: string) => (root === '/' ? p : p === '/' ? root : root + p);
    return resolveInTree(path, followFinal, { raw: (p) => this.raw(under(p)) }).then(under);
  }

  private async raw(path: string): Promise<RawNode | undefined> {
    const node = await this.lookup(path);
    if (!node) return undefined;
    if (node.type !== 'symlink') return { isSymlink: false, readlink: () => Promise.reject(new Error('not a symlink')) };
    const planned = node.planned;
    const view = this.view;
    return {
      isSymlink: true,
      readlink: async () => {
        if (planned) return planned.linkname ?? '';
        return view!.readlink(path);
      },
    };
  }

  /**
   * Creates the missing directories of a resolved path (Go's MkdirAll as fsutil uses it).
   * @throws CopyError when a component exists and is not a directory.
   */
  async mkdirAll(path: string, meta: DirMeta): Promise<void> {
    let cur = '';
    for (const part of components(path)) {
      cur += `/${part}`;
      const node = await this.lookup(cur);
      if (!node) {
        this.put({ path: cur, type: 'directory', origin: 'created', spec: { type: 'directory', mode: meta.mode, uid: meta.uid, gid: meta.gid } });
      } else if (node.type !== 'directory') {
        throw new CopyError('COPY_NOT_A_DIRECTORY', `mkdir ${cur}: not a directory`);
      }
    }
  }

  /** Adds or replaces a planned node; a non-directory replacing a planned directory drops what was planned below it. */
  put(p: Planned): void {
    const prev = this.planned.get(p.path);
    if (prev?.type === 'directory' && p.type !== 'directory') this.removeBelow(p.path);
    this.planned.set(p.path, p);
  }

  get(path: string): Planned | undefined {
    return this.planned.get(path);
  }

  /** Drops a planned node and everything planned below it. */
  remove(path: string): void {
    this.planned.delete(path);
    this.removeBelow(path);
  }

  private removeBelow(path: string): void {
    const prefix = `${path}/`;
    for (const key of [...this.planned.keys()]) if (key.startsWith(prefix)) this.planned.delete(key);
  }

  /**
   * The planned directory at `path` for changing its metadata: an existing rootfs directory is
   * brought into the plan with its current metadata first.
   */
  async directoryForUpdate(path: string): Promise<Planned | undefined> {
    const node = await this.lookup(path);
    if (!node || node.type !== 'directory' || path === '/') return undefined;
    if (node.planned) return node.planned;
    const p = existingDir(path, node.entry);
    this.planned.set(path, p);
    return p;
  }

  /** The layer's entries: every planned node and the ancestors that complete them, sorted by path. */
  async finish(): Promise<TarEntrySpec[]> {
    const missing = new Set<string>();
    for (const path of this.planned.keys()) {
      for (const a of ancestorsOf(path)) if (!this.planned.has(a)) missing.add(a);
    }
    for (const a of [...missing].sort()) {
      const entry = this.view ? await this.view.lstatPhysical(a) : undefined;
      this.planned.set(a, existingDir(a, entry?.type === 'directory' ? entry : undefined));
    }
    const out: TarEntrySpec[] = [];
    for (const p of this.planned.values()) out.push({ ...p.spec, path: p.path });
    out.sort((a, b) => Buffer.compare(Buffer.from(a.path), Buffer.from(b.path)));
    return out;
  }
}

/** A rootfs directory listed as it is (its host copy gives the xattrs), or a plain 0755 one when there is none. */
function existingDir(path: string, entry: FSEntry | undefined): Planned {
  if (!entry) return { path: cleanAbs(path), type: 'directory', origin: 'created', spec: { type: 'directory', mode: 0o755, uid: 0, gid: 0 } };
  return {
    path,
    type: 'directory',
    origin: 'existing',
    spec: { source: entry.hostPath, mode: entry.mode, uid: entry.uid, gid: entry.gid, mtime: Math.floor(entry.mtimeMs / 1000) },
  };
}
