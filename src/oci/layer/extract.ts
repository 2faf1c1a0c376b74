/**
 * Applying a layer tar onto a directory, safely.
 *
 * Safety: every name is split and checked (no `..`, no absolute names); parent paths are resolved one
 * component at a time with lstat, following symlinks *inside* the target as if it were the root and
 * refusing any that lead out of it (a relative link climbing above the root, an absolute link); the
 * last component is never followed (files are created with O_EXCL|O_NOFOLLOW, owners and times are set
 * with the l* calls); hardlink targets go through the same resolution. A refused entry throws
 * UnsafeLayerEntryError naming it, before anything of it is written.
 *
 * Whiteouts: `apply` deletes what they name (flattening layers into a plain rootfs); `overlay` turns
 * them into what overlayfs reads in a lower dir (char device 0/0, `user.overlay.opaque=y`).
 */
import {
  closeSync,
  chmodSync,
  linkSync,
  lchownSync,
  lstatSync,
  lutimesSync,
  mkdirSync,
  openSync,
  readdirSync,
  readlinkSync,
  rmSync,
  symlinkSync,
  writeSync,
  constants as fsc,
  type Stats,
} from 'node:fs';
import { isAbsolute, join, resolve } from 'node:path';
import type { Readable } from 'node:stream';
import { setAttributeSync } from '@napi-rs/xattr';
import { KilnError } from '../../errors.js';
import { LayerExtractError, LayerFormatError, UnsafeLayerEntryError } from './errors.js';
import { NodeBatch } from './nodes.js';
import { WHITEOUT_META_PREFIX, WHITEOUT_OPAQUE, WHITEOUT_PREFIX, entryComponents, isOverlayXattr } from './paths.js';
import { createExtract, headerXattrs, paxString, type Header } from './tar.js';
import { errnoOf, messageOf } from './util.js';
import type { XattrPolicy } from './writer.js';

export interface ExtractWarning {
  code: 'device-skipped' | 'xattr-skipped' | 'whiteout-meta-skipped';
  entry: string;
  message: string;
}

export interface ExtractOptions {
  /**
   * `apply` (default): whiteouts delete what they name; for flattening layers into a plain rootfs.
   * `overlay`: whiteouts become overlay's own markers; for a snapshot used as an overlay lowerdir.
   */
  whiteouts?: 'apply' | 'overlay';
  /**
   * `keep` (default): lchown to the tar's numeric owners, and fail when the kernel refuses (e.g.
   * EINVAL in a user namespace without a full id map). `ignore`: leave files owned by the extractor.
   */
  ownership?: 'keep' | 'ignore';
  /** Which xattrs to restore (overlay's own are never restored from a tar). Default: all. */
  xattrs?: XattrPolicy;
  /** The namespace of the overlay markers written in `overlay` mode. Default `user` (mounts with `userxattr`). */
  overlayXattrNamespace?: 'user' | 'trusted';
  /**
   * Resolve absolute symlinks met in parent paths inside the target (as containerd does) instead of
   * refusing the entry. Default false: a layer whose entries go through an absolute symlink is refused.
   */
  followAbsoluteSymlinks?: boolean;
  /** Things skipped rather than failed on: device nodes the kernel refuses, xattrs it cannot store. */
  onWarning?: (warning: ExtractWarning) => void;
  signal?: AbortSignal;
}

export interface ExtractResult {
  /** Entries read from the tar. */
  entries: number;
  /** Bytes of regular file content written. */
  bytes: number;
}

/** Symlinks followed while resolving one path, as Linux's MAXSYMLINKS. */
const MAX_SYMLINKS = 40;

/**
 * Applies the uncompressed layer tar read from `tar` onto `targetDir` (which must exist). The stream is
 * consumed, and destroyed on failure. Resolves once everything, including directory times, is applied.
 */
export async function extractLayer(tar: Readable, targetDir: string, options: ExtractOptions = {}): Promise<ExtractResult> {
  const root = resolve(targetDir);
  let rootStat: Stats;
  try {
    rootStat = lstatSync(root);
  } catch (err) {
    throw new LayerExtractError('.', `target ${root} cannot be read: ${messageOf(err)}`, { cause: err });
  }
  if (!rootStat.isDirectory()) throw new LayerExtractError('.', `target ${root} is not a directory`);

  const extractor = new Extractor(root, options);
  const ex = createExtract();
  // The parser's own failure (bad header, truncated data) is the one to report, not the "destroyed"
  // error the entry being read gets as a consequence.
  let parseError: Error | undefined;
  ex.on('error', (err: unknown) => {
    parseError ??= err instanceof Error ? err : new Error(String(err));
  });
  const onInputError = (err: Error) => ex.destroy(err);
  tar.on('error', onInputError);
  tar.pipe(ex as unknown as NodeJS.WritableStream);
  const abort = () => ex.destroy(options.signal?.reason instanceof Error ? options.signal.reason : new Error('aborted'));
  options.signal?.addEventListener('abort', abort, { once: true });
  try {
    options.signal?.throwIfAborted();
    for await (const entry of ex) {
      await extractor.entry(entry.header, entry);
    }
    await extractor.finish();
    return extractor.result;
  } catch (err) {
    tar.unpipe(ex as unknown as NodeJS.WritableStream);
    tar.destroy();
    ex.destroy();
    throw wrapStreamError(err instanceof KilnError ? err : (parseError ?? err));
  } finally {
    tar.off('error', onInputError);
    options.signal?.removeEventListener('abort', abort);
  }
}

function wrapStreamError(err: unknown): unknown {
  if (err instanceof Error && !(err as { code?: unknown }).code && /tar|header|Unexpected end of data/i.test(err.message)) {
    return new LayerFormatError(err.message, undefined, { cause: err });
  }
  return err;
}

type EntryBody = AsyncIterable<unknown> & { header: Header };

interface DirMeta {
  mode: number;
  mtime: number;
}

class Extractor {
  readonly result: ExtractResult = { entries: 0, bytes: 0 };
  private readonly whiteouts: 'apply' | 'overlay';
  private readonly keepOwners: boolean;
  private readonly xattrFilter: ((name: string) => boolean) | undefined;
  private readonly nodes: NodeBatch;
  /** Final mode and mtime of directories, applied at the end so later entries can still be written. */
  private readonly dirs = new Map<string, DirMeta>();
  /** Paths (relative, resolved) this layer wrote; an opaque marker removes everything else. */
  private readonly unpacked = new Set<string>();
  /** Resolved directories known to be real directories; dropped whenever anything is removed. */
  private knownDirs = new Set<string>();

  constructor(
    private readonly root: string,
    private readonly options: ExtractOptions,
  ) {
    this.whiteouts = options.whiteouts ?? 'apply';
    this.keepOwners = (options.ownership ?? 'keep') === 'keep';
    const x = options.xattrs ?? true;
    this.xattrFilter = x === true ? () => true : x === false ? undefined : x;
    this.nodes = new NodeBatch(root);
  }

  async entry(header: Header, body: EntryBody): Promise<void> {
    this.result.entries++;
    await this.apply(header, body);
    // Bodies of entries that carry no content for us (hardlinks with data, skipped entries) must still
    // be read for the next header to come.
    for await (const _ of body) void _;
  }

  private async apply(header: Header, body: EntryBody): Promise<void> {
    const name = header.name;
    const type = header.type as string | null;
    if (paxString(header, 'GNU.sparse.major') !== undefined || paxString(header, 'GNU.sparse.map') !== undefined) {
      throw new LayerFormatError('sparse files are not supported', name);
    }
    const parts = entryComponents(name);
    if (parts.length === 0) return; // the root itself: its metadata belongs to the target, not the layer
    const base = parts[parts.length - 1]!;

    if (base.startsWith(WHITEOUT_PREFIX)) {
      await this.whiteout(name, parts.slice(0, -1), base);
      return;
    }

    const parentRel = await this.resolveParent(parts.slice(0, -1), name);
    const rel = parentRel ? `${parentRel}/${base}` : base;
    const path = join(this.root, rel);
    if (this.nodes.has(path)) await this.nodes.flush();
    this.ensureParent(parentRel, name);

    let existing: Stats | undefined;
    try {
      existing = lstatSync(path);
    } catch {
      existing = undefined;
    }
    if (existing && !(existing.isDirectory() && type === 'directory')) {
      await this.remove(path, name);
      existing = undefined;
    }

    const uid = numericPax(header, 'uid') ?? header.uid;
    const gid = numericPax(header, 'gid') ?? header.gid;
    const mtime = numericPax(header, 'mtime') ?? header.mtime.getTime() / 1000;
    const mode = header.mode & 0o7777;

    switch (type) {
      case 'directory':
        if (!existing) this.fs(name, () => mkdirSync(path, { mode: 0o700 }));
        this.knownDirs.add(rel);
        this.owner(name, path, uid, gid);
        this.setXattrs(name, path, header, false);
        this.dirs.set(path, { mode, mtime });
        break;
      case 'file':
      case 'contiguous-file':
        await this.writeFile(name, path, body);
        this.finishNode(name, path, uid, gid, mode, mtime, header, false);
        break;
      case 'symlink':
        this.fs(name, () => symlinkSync(header.linkname, path));
        this.finishNode(name, path, uid, gid, mode, mtime, header, true);
        break;
      case 'link':
        await this.hardlink(name, path, header.linkname);
        break;
      case 'character-device':
      case 'block-device':
      case 'fifo':
        this.queueNode(name, path, type, header.devmajor, header.devminor, () => this.finishNode(name, path, uid, gid, mode, mtime, header, false));
        break;
      default:
        throw new LayerFormatError(`unsupported entry type ${type === null ? '(unknown typeflag)' : type}`, name);
    }
    this.unpacked.add(rel);
    if (this.nodes.size >= 2048) await this.nodes.flush();
  }

  async finish(): Promise<void> {
    await this.nodes.flush();
    for (const [path, meta] of this.dirs) {
      try {
        // A later entry may have replaced the directory (with a file, or a symlink chmod would follow).
        if (!lstatSync(path).isDirectory()) continue;
        chmodSync(path, meta.mode);
        lutimesSync(path, meta.mtime, meta.mtime);
      } catch (err) {
        if (errnoOf(err) !== 'ENOENT') throw new LayerExtractError(path, `cannot set directory metadata: ${messageOf(err)}`, { cause: err });
      }
    }
  }

  // -- whiteouts ------------------------------------------------------------------------------

  private async whiteout(name: string, dirParts: string[], base: string): Promise<void> {
    const dirRel = await this.resolveParent(dirParts, name);
    const dirPath = dirRel ? join(this.root, dirRel) : this.root;
    if (base === WHITEOUT_OPAQUE) {
      this.ensureParent(dirRel, name);
      if (this.whiteouts === 'overlay') {
        const key = `${this.options.overlayXattrNamespace ?? 'user'}.overlay.opaque`;
        try {
          setAttributeSync(dirPath, key, 'y');
        } catch (err) {
          throw new LayerExtractError(name, `cannot mark ${dirRel || '/'} opaque (${key}): ${messageOf(err)}`, { cause: err });
        }
      } else {
        await this.nodes.flush();
        this.clearLower(dirRel, name);
      }
      return;
    }
    if (base.startsWith(WHITEOUT_META_PREFIX)) {
      // AUFS bookkeeping (.wh..wh.plnk, .wh..wh.aufs): not part of the image.
      this.options.onWarning?.({ code: 'whiteout-meta-skipped', entry: name, message: 'whiteout metadata entry ignored' });
      return;
    }
    const target = base.slice(WHITEOUT_PREFIX.length);
    if (target === '' || target === '.' || target === '..') {
      throw new UnsafeLayerEntryError(name, `whiteout of "${target}"`);
    }
    const rel = dirRel ? `${dirRel}/${target}` : target;
    const path = join(this.root, rel);
    if (this.whiteouts === 'apply') {
      await this.remove(path, name);
      return;
    }
    this.ensureParent(dirRel, name);
    if (this.nodes.has(path)) await this.nodes.flush();
    if (exists(path)) await this.remove(path, name);
    // Mode 0 like the kernel's own whiteouts; overlay only looks at the type and the device number.
    this.queueNode(name, path, 'character-device', 0, 0, () => this.fs(name, () => chmodSync(path, 0)), true);
    this.unpacked.add(rel);
  }

  /** Removes everything below `dirRel` that this layer did not write itself (an opaque marker in apply mode). */
  private clearLower(dirRel: string, name: string): void {
    const dirPath = dirRel ? join(this.root, dirRel) : this.root;
    let children: string[];
    try {
      children = readdirSync(dirPath);
    } catch (err) {
      if (errnoOf(err) === 'ENOENT') return;
      throw new LayerExtractError(name, `cannot list ${dirRel || '/'}: ${messageOf(err)}`, { cause: err });
    }
    for (const child of children) {
      const rel = dirRel ? `${dirRel}/${child}` : child;
      const path = join(this.root, rel);
      if (!this.unpacked.has(rel)) {
        this.fs(name, () => rmSync(path, { recursive: true, force: true }));
        this.knownDirs = new Set();
      } else if (lstatSync(path).isDirectory()) {
        this.clearLower(rel, name);
      }
    }
  }

  // -- creating things -------------------------------------------------------------------------

  private async writeFile(name: string, path: string, body: EntryBody): Promise<void> {
    const fd = this.fs(name, () => openSync(path, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL | fsc.O_NOFOLLOW, 0o600));
    try {
      for await (const chunk of body) {
        const buf = chunk as Buffer;
        let off = 0;
        while (off < buf.length) off += this.fs(name, () => writeSync(fd, buf, off, buf.length - off));
        this.result.bytes += buf.length;
      }
    } finally {
      closeSync(fd);
    }
  }

  private async hardlink(name: string, path: string, linkname: string): Promise<void> {
    let parts: string[];
    try {
      parts = entryComponents(linkname);
    } catch (err) {
      if (err instanceof UnsafeLayerEntryError) throw new UnsafeLayerEntryError(name, `hardlink target "${linkname}": ${err.reason}`);
      throw err;
    }
    if (parts.length === 0) throw new UnsafeLayerEntryError(name, 'hardlink to the root directory');
    const parentRel = await this.resolveParent(parts.slice(0, -1), name, `hardlink target "${linkname}"`);
    const targetRel = parentRel ? `${parentRel}/${parts[parts.length - 1]}` : parts[parts.length - 1]!;
    const target = join(this.root, targetRel);
    if (this.nodes.has(target)) await this.nodes.flush();
    let st: Stats;
    try {
      st = lstatSync(target);
    } catch {
      throw new LayerFormatError(`hardlink target "${linkname}" does not exist`, name);
    }
    if (st.isDirectory()) throw new LayerFormatError(`hardlink target "${linkname}" is a directory`, name);
    this.fs(name, () => linkSync(target, path));
  }

  private queueNode(
    name: string,
    path: string,
    type: 'character-device' | 'block-device' | 'fifo',
    devmajor: number,
    devminor: number,
    then: () => void,
    whiteout = false,
  ): void {
    this.nodes.add({
      path,
      type,
      devmajor,
      devminor,
      entry: name,
      done: (created, detail) => {
        if (created) {
          then();
          return;
        }
        if (whiteout || type === 'fifo') {
          throw new LayerExtractError(name, `cannot create ${whiteout ? 'whiteout device' : type}: ${detail}`);
        }
        this.options.onWarning?.({ code: 'device-skipped', entry: name, message: `device node not created: ${detail}` });
      },
    });
  }

  private finishNode(name: string, path: string, uid: number, gid: number, mode: number, mtime: number, header: Header, symlink: boolean): void {
    this.owner(name, path, uid, gid);
    // After chown, which clears setuid/setgid; symlinks have no mode of their own on Linux.
    if (!symlink) this.fs(name, () => chmodSync(path, mode));
    // After chown and chmod: chown clears security.capability.
    this.setXattrs(name, path, header, symlink);
    this.fs(name, () => lutimesSync(path, mtime, mtime));
  }

  private owner(name: string, path: string, uid: number, gid: number): void {
    if (!this.keepOwners) return;
    try {
      lchownSync(path, uid, gid);
    } catch (err) {
      const errno = errnoOf(err);
      throw new LayerExtractError(name, `cannot set owner ${uid}:${gid}: ${messageOf(err)}`, {
        cause: err,
        hint:
          errno === 'EINVAL' || errno === 'EPERM'
            ? 'the id is outside the user namespace map: set up subordinate ids (/etc/subuid, /etc/subgid) or extract with ownership "ignore"'
            : undefined,
      });
    }
  }

  private setXattrs(name: string, path: string, header: Header, symlink: boolean): void {
    if (!this.xattrFilter) return;
    for (const [key, value] of headerXattrs(header)) {
      // A layer must never be able to plant overlay markers (opaque dirs, redirects) in a snapshot.
      if (isOverlayXattr(key) || !this.xattrFilter(key)) continue;
      if (symlink && key.startsWith('user.')) {
        this.options.onWarning?.({ code: 'xattr-skipped', entry: name, message: `${key}: user xattrs cannot be set on symlinks` });
        continue;
      }
      try {
        setAttributeSync(path, key, value);
      } catch (err) {
        const errno = errnoOf(err);
        if (errno === 'ENOSPC' || errno === 'EIO' || errno === 'EROFS') {
          throw new LayerExtractError(name, `cannot set xattr ${key}: ${messageOf(err)}`, { cause: err });
        }
        this.options.onWarning?.({ code: 'xattr-skipped', entry: name, message: `${key}: ${messageOf(err)}` });
      }
    }
  }

  private async remove(path: string, name: string): Promise<void> {
    await this.nodes.flush();
    this.fs(name, () => rmSync(path, { recursive: true, force: true }));
    this.knownDirs = new Set();
  }

  // -- path resolution -------------------------------------------------------------------------

  /**
   * Resolves the parent components of an entry inside the root: symlinks are followed as if the root
   * were `/`, and refused when they lead out of it. Returns the resolved relative path ('' for the
   * root). Components that do not exist yet are kept as they are (they will be created).
   */
  private async resolveParent(parts: string[], name: string, what = 'parent path'): Promise<string> {
    const joined = parts.join('/');
    if (this.knownDirs.has(joined)) return joined;
    const out: string[] = [];
    const queue = [...parts];
    let links = 0;
    let missing = false;
    while (queue.length > 0) {
      const part = queue.shift()!;
      if (part === '' || part === '.') continue;
      if (part === '..') {
        if (out.length === 0) throw new UnsafeLayerEntryError(name, `${what} resolves outside the target through a symlink`);
        out.pop();
        continue;
      }
      const rel = out.length ? `${out.join('/')}/${part}` : part;
      if (missing || this.knownDirs.has(rel)) {
        out.push(part);
        continue;
      }
      const path = join(this.root, rel);
      if (this.nodes.has(path)) await this.nodes.flush();
      let st: Stats;
      try {
        st = lstatSync(path);
      } catch {
        missing = true;
        out.push(part);
        continue;
      }
      if (st.isSymbolicLink()) {
        if (++links > MAX_SYMLINKS) throw new UnsafeLayerEntryError(name, `${what} has too many levels of symlinks`);
        const target = readlinkSync(path);
        if (isAbsolute(target)) {
          if (!this.options.followAbsoluteSymlinks) {
            throw new UnsafeLayerEntryError(name, `${what} goes through "${rel}", a symlink to the absolute path "${target}" outside the target`);
          }
          out.length = 0;
        }
        queue.unshift(...target.split('/'));
        continue;
      }
      if (!st.isDirectory()) {
        throw new LayerFormatError(`${what}: "${rel}" exists and is not a directory`, name);
      }
      out.push(part);
      this.knownDirs.add(rel);
    }
    return out.join('/');
  }

  /** Creates missing directories of a resolved parent path (0755, like Docker's and containerd's implicit parents). */
  private ensureParent(parentRel: string, name: string): void {
    if (!parentRel || this.knownDirs.has(parentRel)) return;
    this.fs(name, () => mkdirSync(join(this.root, parentRel), { recursive: true, mode: 0o755 }));
    this.knownDirs.add(parentRel);
  }

  /** Runs a file system call, turning its failure into an error naming the entry. */
  private fs<T>(name: string, op: () => T): T {
    try {
      return op();
    } catch (err) {
      if (err instanceof LayerExtractError || err instanceof UnsafeLayerEntryError || err instanceof LayerFormatError) throw err;
      throw new LayerExtractError(name, messageOf(err), { cause: err });
    }
  }
}

function numericPax(header: Header, key: string): number | undefined {
  const value = paxString(header, key);
  if (value === undefined) return undefined;
  const n = Number(value);
  return Number.isFinite(n) ? n : undefined;
}

function exists(path: string): boolean {
  try {
    lstatSync(path);
    return true;
  } catch {
    return false;
  }
}
