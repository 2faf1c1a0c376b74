/**
 * The entries of a layer tar: how host files and synthesized specs become tar headers (modes,
 * owners, clamped times, xattrs, hardlinks, whiteouts) and in what order. Both layer writers take
 * their entries from here — the streaming writer (writer.ts) and the one-pass COPY writer
 * (build/copy/tar-writer.ts) — so the same entries give the same bytes, whichever writes them.
 */
import { constants as fsc, lstatSync, openSync, readlinkSync, type Stats } from 'node:fs';
import { getAttributeSync, listAttributesSync } from '@napi-rs/xattr';
import { LayerSourceError } from './errors.js';
import { WHITEOUT_OPAQUE, WHITEOUT_PREFIX, defaultXattrFilter, destinationComponents, isOverlayXattr } from './paths.js';
import type { EntryHeader } from './tar.js';
import { errnoOf, messageOf } from './util.js';

/** `true`: every xattr except security.selinux; `false`: none; a function: those it accepts. */
export type XattrPolicy = boolean | ((name: string) => boolean);

export interface LayerWarning {
  code: 'socket-skipped' | 'xattr-unsupported';
  path: string;
  message: string;
}

export interface TarWriteOptions {
  /** Seconds since the epoch: later mtimes are clamped to it, and synthesized entries get it. */
  sourceDateEpoch?: number;
  /** Which xattrs to record (overlay's own are never recorded). Default `true`. */
  xattrs?: XattrPolicy;
  /** Things skipped rather than failed on (sockets, file systems without xattrs). */
  onWarning?: (warning: LayerWarning) => void;
  signal?: AbortSignal;
}

/** One entry of an explicit tar (COPY and the like). */
export interface TarEntrySpec {
  /** Destination inside the layer; a leading `/` is the image root. */
  path: string;
  /** A host path whose type, content and metadata the entry takes (symlinks are not followed). */
  source?: string;
  /** Without `source`: what to synthesize. `whiteout` deletes `path`; `opaque` hides lower content of the directory `path`. */
  type?: 'file' | 'directory' | 'symlink' | 'whiteout' | 'opaque';
  /** Content of a synthesized file. */
  content?: Uint8Array | string;
  /** Target of a synthesized symlink. */
  linkname?: string;
  uid?: number;
  gid?: number;
  /** Permission bits (with setuid/setgid/sticky); defaults to the source's, or 0644/0755. */
  mode?: number;
  /** Seconds since the epoch (or a Date); defaults to the source's, or `sourceDateEpoch` or 0. */
  mtime?: number | Date;
  /** Replaces the source's xattrs when given. */
  xattrs?: Record<string, Uint8Array | string>;
}

/** One entry to write: its header and, for a regular file, where its content comes from. */
export interface PackItem {
  header: EntryHeader;
  /** Regular file content read from disk while writing. */
  source?: { path: string; size: number };
  /** Regular file content given in memory. */
  data?: Uint8Array;
}

/** Metadata a stat-derived entry may override. */
interface Overrides {
  uid?: number;
  gid?: number;
  mode?: number;
  mtime?: number;
  xattrs?: Array<[string, Uint8Array]>;
}

interface HardlinkTarget {
  name: string;
  signature: string;
}

/** Turns lstat results into entry headers; remembers inodes for hardlinks. */
export class EntryBuilder {
  private readonly links = new Map<string, HardlinkTarget>();
  private readonly filter: ((name: string) => boolean) | undefined;

  constructor(private readonly options: TarWriteOptions) {
    const x = options.xattrs ?? true;
    this.filter = x === true ? defaultXattrFilter : x === false ? undefined : x;
  }

  mtime(seconds: number): number {
    const epoch = this.options.sourceDateEpoch;
    return epoch !== undefined && seconds > epoch ? epoch : seconds;
  }

  /** Default time for entries that have no file behind them. */
  get syntheticTime(): number {
    return this.options.sourceDateEpoch ?? 0;
  }

  /**
   * The xattrs to record for a path, plus what overlay says about it. Overlay features that make an
   * upper dir depend on its lowers (redirects, metacopy) cannot be expressed in a layer: refuse them.
   */
  readXattrs(path: string, overlay: boolean): { xattrs: Array<[string, Uint8Array]>; opaque: boolean } {
    let names: string[];
    try {
      names = listAttributesSync(path);
    } catch (err) {
      if (errnoOf(err) === 'ENOTSUP') {
        return { xattrs: [], opaque: false };
      }
      throw new LayerSourceError(path, `cannot list xattrs: ${messageOf(err)}`, { cause: err });
    }
    const xattrs: Array<[string, Uint8Array]> = [];
    let opaque = false;
    for (const name of names) {
      if (isOverlayXattr(name)) {
        if (!overlay) continue;
        const kind = name.slice(name.indexOf('.overlay.') + '.overlay.'.length);
        if (kind === 'opaque') {
          // "y" marks an opaque dir; newer kernels also use "x" for "has xattr whiteouts", which is not opaque.
          opaque ||= this.get(path, name)?.toString('latin1') === 'y';
        } else if (kind === 'redirect' || kind === 'metacopy') {
          throw new LayerSourceError(path, `carries ${name}: the upper dir depends on its lower layers`, {
            hint: 'mount overlay with redirect_dir=off and metacopy=off (kiln never enables them)',
          });
        }
        continue;
      }
      if (!this.filter?.(name)) continue;
      const value = this.get(path, name);
      if (value) xattrs.push([name, value]);
    }
    if (xattrs.length > 1) xattrs.sort((a, b) => Buffer.compare(Buffer.from(a[0]), Buffer.from(b[0])));
    return { xattrs, opaque };
  }

  private get(path: string, name: string): Buffer | undefined {
    try {
      return getAttributeSync(path, name) ?? undefined;
    } catch (err) {
      if (errnoOf(err) === 'ENODATA') return undefined;
      throw new LayerSourceError(path, `cannot read xattr ${name}: ${messageOf(err)}`, { cause: err });
    }
  }

  /**
   * The entry for `path` (already lstat'ed as `st`) named `name` in the tar (without the directory
   * slash), or undefined when tar cannot carry it (sockets).
   */
  fromStat(path: string, name: string, st: Stats, xattrs: Array<[string, Uint8Array]>, o: Overrides = {}): PackItem | undefined {
    const base = {
      mode: o.mode ?? st.mode & 0o7777,
      uid: o.uid ?? st.uid,
      gid: o.gid ?? st.gid,
      size: 0,
      mtime: this.mtime(o.mtime ?? Math.floor(st.mtimeMs / 1000)),
      xattrs: o.xattrs ?? xattrs,
    };
    if (st.isDirectory()) return { header: { ...base, name: `${name}/`, type: 'directory' } };
    if (st.isSymbolicLink()) {
      const target = readlinkSync(path, { encoding: 'buffer' });
      return { header: { ...base, name, type: 'symlink', linkname: strictUtf8(target, path) } };
    }
    if (st.isFIFO()) return { header: { ...base, name, type: 'fifo' } };
    if (st.isCharacterDevice() || st.isBlockDevice()) {
      const { major, minor } = splitDev(st.rdev);
      if (major > 0o777777 || minor > 0o777777) {
        throw new LayerSourceError(path, `device ${major}:${minor} does not fit in a tar header`);
      }
      const type = st.isCharacterDevice() ? 'character-device' : 'block-device';
      return { header: { ...base, name, type, devmajor: major, devminor: minor } };
    }
    if (st.isSocket()) {
      this.options.onWarning?.({ code: 'socket-skipped', path, message: 'sockets cannot be stored in a tar; skipped' });
      return undefined;
    }
    if (!st.isFile()) throw new LayerSourceError(path, 'unknown file type');

    if (st.nlink > 1) {
      const inode = `${st.dev}:${st.ino}`;
      const signature = JSON.stringify([base.mode, base.uid, base.gid, base.mtime, base.xattrs.map(([k, v]) => [k, Buffer.from(v).toString('base64')])]);
      const first = this.links.get(inode);
      if (first && first.signature === signature) {
        return { header: { ...base, xattrs: [], name, type: 'link', linkname: first.name } };
      }
      if (!first) this.links.set(inode, { name, signature });
    }
    return { header: { ...base, name, type: 'file', size: st.size }, source: { path, size: st.size } };
  }
}

/** An entry spec with its name in the tar, its sort key, and its source's lstat (taken once). */
export interface ListedSpec {
  spec: TarEntrySpec;
  /** Name in the tar, without a directory slash. */
  tarName: string;
  /** Sort key: the tar name's bytes as written (with the directory slash). */
  key: Buffer;
  st?: Stats;
}

/** Checks one spec's destination and works out its tar name. */
export function listSpec(spec: TarEntrySpec): ListedSpec {
  const parts = destinationComponents(spec.path);
  if (!parts) throw new LayerSourceError(spec.path, 'not a valid destination inside the layer');
  let tarName = parts.join('/');
  let isDir = spec.type === 'directory';
  let st: Stats | undefined;
  if (spec.type === 'whiteout') {
    parts[parts.length - 1] = WHITEOUT_PREFIX + parts[parts.length - 1];
    tarName = parts.join('/');
  } else if (spec.type === 'opaque') {
    tarName = `${tarName}/${WHITEOUT_OPAQUE}`;
  } else if (spec.source !== undefined) {
    st = lstatOrThrow(spec.source);
    isDir = st.isDirectory();
  }
  if (parts[parts.length - 1]!.startsWith(WHITEOUT_PREFIX) && spec.type !== 'whiteout') {
    throw new LayerSourceError(spec.path, 'names starting with ".wh." are whiteout markers in OCI layers');
  }
  return { spec, tarName, key: Buffer.from(isDir ? `${tarName}/` : tarName, 'utf8'), ...(st ? { st } : {}) };
}

/** Sorts listed specs into tar-name order (in place) and refuses a name listed twice. */
export function sortListed(list: ListedSpec[]): ListedSpec[] {
  list.sort((a, b) => Buffer.compare(a.key, b.key));
  for (let i = 1; i < list.length; i++) {
    if (list[i - 1]!.tarName === list[i]!.tarName) {
      throw new LayerSourceError(list[i]!.spec.path, 'listed twice');
    }
  }
  return list;
}

/**
 * The entries of sorted, listed specs, one at a time. Hardlinked sources whose metadata agree
 * become hardlinks; parent directories are not invented.
 */
export function* specPackItems(list: readonly ListedSpec[], options: TarWriteOptions): Generator<PackItem> {
  const builder = new EntryBuilder(options);
  for (const { spec, tarName, st } of list) {
    options.signal?.throwIfAborted();
    const mtime = spec.mtime === undefined ? undefined : spec.mtime instanceof Date ? Math.floor(spec.mtime.getTime() / 1000) : Math.floor(spec.mtime);
    const xattrs = spec.xattrs
      ? Object.entries(spec.xattrs)
          .filter(([name]) => !isOverlayXattr(name))
          .map(([name, value]): [string, Uint8Array] => [name, typeof value === 'string' ? Buffer.from(value, 'utf8') : value])
          .sort((a, b) => Buffer.compare(Buffer.from(a[0]), Buffer.from(b[0])))
      : undefined;

    if (spec.source !== undefined && spec.type !== 'whiteout' && spec.type !== 'opaque') {
      const own = xattrs ? [] : builder.readXattrs(spec.source, false).xattrs;
      const item = builder.fromStat(spec.source, tarName, st!, own, {
        ...(spec.uid !== undefined ? { uid: spec.uid } : {}),
        ...(spec.gid !== undefined ? { gid: spec.gid } : {}),
        ...(spec.mode !== undefined ? { mode: spec.mode & 0o7777 } : {}),
        ...(mtime !== undefined ? { mtime } : {}),
        ...(xattrs ? { xattrs } : {}),
      });
      if (item) yield item;
      continue;
    }

    const time = builder.mtime(mtime ?? builder.syntheticTime);
    const owner = { uid: spec.uid ?? 0, gid: spec.gid ?? 0, xattrs: xattrs ?? [] };
    switch (spec.type) {
      case 'whiteout':
      case 'opaque':
        yield { header: { name: tarName, type: 'file', mode: spec.mode ?? 0, uid: owner.uid, gid: owner.gid, size: 0, mtime: time }, data: Buffer.alloc(0) };
        break;
      case 'directory':
        yield { header: { ...owner, name: `${tarName}/`, type: 'directory', mode: (spec.mode ?? 0o755) & 0o7777, size: 0, mtime: time } };
        break;
      case 'symlink':
        if (spec.linkname === undefined) throw new LayerSourceError(spec.path, 'a symlink entry needs a linkname');
        yield { header: { ...owner, name: tarName, type: 'symlink', mode: (spec.mode ?? 0o777) & 0o7777, size: 0, mtime: time, linkname: spec.linkname } };
        break;
      case 'file':
      case undefined: {
        if (spec.type === undefined && spec.content === undefined) {
          throw new LayerSourceError(spec.path, 'an entry needs a source, a type or content');
        }
        const data = typeof spec.content === 'string' ? Buffer.from(spec.content, 'utf8') : (spec.content ?? Buffer.alloc(0));
        yield { header: { ...owner, name: tarName, type: 'file', mode: (spec.mode ?? 0o644) & 0o7777, size: data.byteLength, mtime: time }, data };
        break;
      }
    }
  }
}

/** Opens a source file's content to read (not through a symlink put in its place since its lstat). */
export function openSourceFile(path: string): number {
  try {
    return openSync(path, fsc.O_RDONLY | fsc.O_NOFOLLOW);
  } catch (err) {
    throw new LayerSourceError(path, `cannot open: ${messageOf(err)}`, { cause: err });
  }
}

/** A source file that ended before the size its header gives. */
export function fileShrankError(path: string, size: number): LayerSourceError {
  return new LayerSourceError(path, `file shrank while it was read (expected ${size} bytes)`);
}

export function lstatOrThrow(path: string): Stats {
  try {
    return lstatSync(path);
  } catch (err) {
    throw new LayerSourceError(path, `cannot stat: ${messageOf(err)}`, { cause: err });
  }
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** Tar names are UTF-8 (PAX); a name that is not cannot be carried faithfully. */
export function strictUtf8(raw: Buffer, where: string): string {
  try {
    return utf8.decode(raw);
  } catch {
    throw new LayerSourceError(where, 'the name is not valid UTF-8 and cannot be stored in a layer');
  }
}

/** glibc's major()/minor() of a dev_t. */
export function splitDev(rdev: number): { major: number; minor: number } {
  const d = BigInt(rdev);
  const major = ((d >> 8n) & 0xfffn) | ((d >> 32n) & 0xfffff000n);
  const minor = (d & 0xffn) | ((d >> 12n) & 0xffffff00n);
  return { major: Number(major), minor: Number(minor) };
}
