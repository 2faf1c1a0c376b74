/**
 * Layer tar writing: a directory tree (a full rootfs, or an overlay upper dir translated to OCI
 * whiteouts) or an explicit list of entries, streamed from disk into a deterministic tar.
 *
 * Determinism: entries are ordered by the bytes of their tar names (directories carry a trailing `/`,
 * so a directory's subtree follows it contiguously and the walk needs only one directory listing in
 * memory at a time); owners are numeric with empty user/group names; times are whole seconds, clamped
 * to SOURCE_DATE_EPOCH when given; xattrs are sorted; nothing depends on readdir order, inode numbers
 * or the clock.
 */
import { closeSync, constants as fsc, lstatSync, openSync, readSync, readdirSync, readlinkSync, type Stats } from 'node:fs';
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { getAttributeSync, listAttributesSync } from '@napi-rs/xattr';
import { LayerSourceError } from './errors.js';
import {
  WHITEOUT_OPAQUE,
  WHITEOUT_PREFIX,
  defaultXattrFilter,
  destinationComponents,
  isOverlayXattr,
} from './paths.js';
import { createPack, toPackHeader, type EntryHeader, type Pack } from './tar.js';
import { errnoOf, messageOf } from './util.js';

export type LayerSourceMode = 'rootfs' | 'overlay-diff';

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

export interface LayerTarOptions extends TarWriteOptions {
  /**
   * `rootfs` (default) tars the tree as it is. `overlay-diff` reads an overlay upper dir: char
   * devices 0/0 become `.wh.<name>`, opaque dirs get `<dir>/.wh..wh..opq`.
   */
  mode?: LayerSourceMode;
}

/** Files up to this size are read in one synchronous call; larger ones are streamed. */
const SMALL_FILE = 256 * 1024;
/** Read size for streamed files. */
const READ_CHUNK = 1024 * 1024;

/**
 * Tars the tree under `source` (the directory itself is not an entry). The stream is produced lazily
 * as it is read; an error (unreadable file, file changed during the walk, abort) destroys it.
 */
export function writeLayerTar(source: string, options: LayerTarOptions = {}): Readable {
  return packItems(walkTree(source, options), options.signal);
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

/**
 * Tars an explicit list of entries. The list is sorted into tar-name order (its specs are held in
 * memory; file contents are not), duplicates are refused, and hardlinked sources whose metadata
 * agree are written as hardlinks. Parent directories are not invented: list them when wanted.
 */
export function writeTarEntries(
  entries: Iterable<TarEntrySpec> | AsyncIterable<TarEntrySpec>,
  options: TarWriteOptions = {},
): Readable {
  return packItems(specItems(entries, options), options.signal);
}

// ---------------------------------------------------------------------------------------------

interface PackItem {
  header: EntryHeader;
  /** Regular file content read from disk while packing. */
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
class EntryBuilder {
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
    xattrs.sort((a, b) => Buffer.compare(Buffer.from(a[0]), Buffer.from(b[0])));
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

interface Child {
  /** Name in the directory (on disk). */
  fsName: string;
  /** Name in the tar, relative to the layer root, without a directory slash. */
  tarName: string;
  /** Sort key: the tar name's bytes as written (with the directory slash). */
  key: Buffer;
  stat?: Stats;
  kind: 'node' | 'whiteout' | 'opaque';
}

async function* walkTree(root: string, options: LayerTarOptions): AsyncGenerator<PackItem> {
  const overlay = options.mode === 'overlay-diff';
  const builder = new EntryBuilder(options);
  let rootStat: Stats;
  try {
    rootStat = lstatSync(root);
  } catch (err) {
    throw new LayerSourceError(root, `cannot read: ${messageOf(err)}`, { cause: err });
  }
  if (!rootStat.isDirectory()) throw new LayerSourceError(root, 'not a directory');
  const rootOpaque = overlay && builder.readXattrs(root, true).opaque;
  yield* walkDir(root, '', rootOpaque, rootStat, builder, options);
}

async function* walkDir(
  dir: string,
  prefix: string,
  opaque: boolean,
  dirStat: Stats,
  builder: EntryBuilder,
  options: LayerTarOptions,
): AsyncGenerator<PackItem> {
  options.signal?.throwIfAborted();
  const overlay = options.mode === 'overlay-diff';
  let raw: Buffer[];
  try {
    raw = readdirSync(dir, { encoding: 'buffer' });
  } catch (err) {
    throw new LayerSourceError(dir, `cannot list: ${messageOf(err)}`, { cause: err });
  }
  const children: Child[] = [];
  for (const rawName of raw) {
    const fsName = strictUtf8(rawName, join(dir, rawName.toString('utf8')));
    const path = join(dir, fsName);
    let st: Stats;
    try {
      st = lstatSync(path);
    } catch (err) {
      throw new LayerSourceError(path, `cannot stat: ${messageOf(err)}`, { cause: err });
    }
    if (fsName.startsWith(WHITEOUT_PREFIX)) {
      throw new LayerSourceError(path, 'names starting with ".wh." are whiteout markers in OCI layers and cannot be stored', {
        hint: 'rename or remove the file',
      });
    }
    const whiteout = overlay && st.isCharacterDevice() && st.rdev === 0;
    const tarName = prefix + (whiteout ? WHITEOUT_PREFIX + fsName : fsName);
    const keyName = st.isDirectory() && !whiteout ? `${tarName}/` : tarName;
    children.push({ fsName, tarName, key: Buffer.from(keyName, 'utf8'), stat: st, kind: whiteout ? 'whiteout' : 'node' });
  }
  if (opaque) {
    const tarName = prefix + WHITEOUT_OPAQUE;
    children.push({ fsName: WHITEOUT_OPAQUE, tarName, key: Buffer.from(tarName, 'utf8'), kind: 'opaque' });
  }
  children.sort((a, b) => Buffer.compare(a.key, b.key));

  for (const child of children) {
    if (child.kind === 'opaque') {
      // Owned and stamped like its directory, as Docker's overlay exporter does.
      yield {
        header: {
          name: child.tarName,
          type: 'file',
          mode: dirStat.mode & 0o777,
          uid: dirStat.uid,
          gid: dirStat.gid,
          size: 0,
          mtime: builder.mtime(Math.floor(dirStat.mtimeMs / 1000)),
        },
        data: Buffer.alloc(0),
      };
      continue;
    }
    const st = child.stat!;
    const path = join(dir, child.fsName);
    if (child.kind === 'whiteout') {
      // An empty regular file owned by root with mode 0, as containerd's and BuildKit's differs write
      // it; never a hardlink even though overlay gives every whiteout the same inode.
      yield {
        header: { name: child.tarName, type: 'file', mode: 0, uid: 0, gid: 0, size: 0, mtime: builder.mtime(Math.floor(st.mtimeMs / 1000)) },
        data: Buffer.alloc(0),
      };
      continue;
    }
    const { xattrs, opaque: childOpaque } = builder.readXattrs(path, overlay);
    const item = builder.fromStat(path, child.tarName, st, xattrs);
    if (!item) continue;
    yield item;
    if (st.isDirectory()) yield* walkDir(path, `${child.tarName}/`, childOpaque, st, builder, options);
  }
}

async function* specItems(
  entries: Iterable<TarEntrySpec> | AsyncIterable<TarEntrySpec>,
  options: TarWriteOptions,
): AsyncGenerator<PackItem> {
  const builder = new EntryBuilder(options);
  const list: Array<{ spec: TarEntrySpec; tarName: string; key: Buffer }> = [];
  for await (const spec of entries) {
    const parts = destinationComponents(spec.path);
    if (!parts) throw new LayerSourceError(spec.path, 'not a valid destination inside the layer');
    let tarName = parts.join('/');
    let isDir = spec.type === 'directory';
    if (spec.type === 'whiteout') {
      parts[parts.length - 1] = WHITEOUT_PREFIX + parts[parts.length - 1];
      tarName = parts.join('/');
    } else if (spec.type === 'opaque') {
      tarName = `${tarName}/${WHITEOUT_OPAQUE}`;
    } else if (spec.source !== undefined) {
      isDir = lstatOrThrow(spec.source).isDirectory();
    }
    if (parts[parts.length - 1]!.startsWith(WHITEOUT_PREFIX) && spec.type !== 'whiteout') {
      throw new LayerSourceError(spec.path, 'names starting with ".wh." are whiteout markers in OCI layers');
    }
    list.push({ spec, tarName, key: Buffer.from(isDir ? `${tarName}/` : tarName, 'utf8') });
  }
  list.sort((a, b) => Buffer.compare(a.key, b.key));
  for (let i = 1; i < list.length; i++) {
    if (list[i - 1]!.tarName === list[i]!.tarName) {
      throw new LayerSourceError(list[i]!.spec.path, 'listed twice');
    }
  }

  for (const { spec, tarName } of list) {
    options.signal?.throwIfAborted();
    const mtime = spec.mtime === undefined ? undefined : spec.mtime instanceof Date ? Math.floor(spec.mtime.getTime() / 1000) : Math.floor(spec.mtime);
    const xattrs = spec.xattrs
      ? Object.entries(spec.xattrs)
          .filter(([name]) => !isOverlayXattr(name))
          .map(([name, value]): [string, Uint8Array] => [name, typeof value === 'string' ? Buffer.from(value, 'utf8') : value])
          .sort((a, b) => Buffer.compare(Buffer.from(a[0]), Buffer.from(b[0])))
      : undefined;

    if (spec.source !== undefined && spec.type !== 'whiteout' && spec.type !== 'opaque') {
      const st = lstatOrThrow(spec.source);
      const own = xattrs ? { xattrs: [] } : builder.readXattrs(spec.source, false);
      const item = builder.fromStat(spec.source, tarName, st, own.xattrs, {
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

// ---------------------------------------------------------------------------------------------

/** Drives tar-stream's pack from an item producer, one entry at a time, honouring backpressure. */
function packItems(items: AsyncGenerator<PackItem>, signal: AbortSignal | undefined): Readable {
  const pack = createPack();
  const out = Readable.from(pack, { objectMode: false, highWaterMark: READ_CHUNK });
  const abort = () => pack.destroy(signal?.reason instanceof Error ? signal.reason : new Error('aborted'));
  signal?.addEventListener('abort', abort, { once: true });
  void (async () => {
    try {
      for await (const item of items) {
        if (pack.destroying) break;
        await writeItem(pack, item);
      }
      pack.finalize();
    } catch (err) {
      pack.destroy(err instanceof Error ? err : new Error(String(err)));
    } finally {
      signal?.removeEventListener('abort', abort);
    }
  })();
  return out;
}

async function writeItem(pack: Pack, item: PackItem): Promise<void> {
  const header = toPackHeader(item.header);
  if (item.header.type !== 'file') {
    await entryDone(pack, header);
    return;
  }
  if (item.data) {
    await entryDone(pack, header, item.data);
    return;
  }
  const { path, size } = item.source!;
  if (size <= SMALL_FILE) {
    await entryDone(pack, header, readSmallFile(path, size));
    return;
  }
  const fh = await open(path, fsc.O_RDONLY | fsc.O_NOFOLLOW).catch((err: unknown) => {
    throw new LayerSourceError(path, `cannot open: ${messageOf(err)}`, { cause: err });
  });
  try {
    let done!: () => void;
    let fail!: (err: Error) => void;
    const finished = new Promise<void>((resolve, reject) => {
      done = resolve;
      fail = reject;
    });
    finished.catch(() => undefined);
    const sink = pack.entry(header, (err) => (err ? fail(err) : done()));
    // A failure is reported through the pack and the callback; the entry's own error event is a duplicate.
    sink.on('error', () => undefined);
    let remaining = size;
    while (remaining > 0) {
      if (sink.destroying) throw new Error('tar stream closed while an entry was written');
      const buf = Buffer.allocUnsafe(Math.min(READ_CHUNK, remaining));
      const { bytesRead } = await fh.read(buf, 0, buf.length, size - remaining);
      if (bytesRead === 0) throw new LayerSourceError(path, `file shrank while it was read (expected ${size} bytes)`);
      remaining -= bytesRead;
      if (!sink.write(bytesRead === buf.length ? buf : buf.subarray(0, bytesRead))) await drained(sink);
    }
    sink.end(undefined);
    await finished;
  } finally {
    await fh.close();
  }
}

function entryDone(pack: Pack, header: ReturnType<typeof toPackHeader>, data?: Uint8Array): Promise<void> {
  return new Promise((resolve, reject) => {
    const cb = (err?: Error | null) => (err ? reject(err) : resolve());
    const sink = data ? pack.entry(header, data, cb) : pack.entry(header, cb);
    sink.on('error', () => undefined); // reported through the pack and the callback
  });
}

function drained(sink: ReturnType<Pack['entry']>): Promise<void> {
  return new Promise((resolve, reject) => {
    if (sink.destroying || sink.destroyed) {
      reject(new Error('tar stream closed while an entry was written'));
      return;
    }
    const cleanup = () => {
      sink.off('drain', onDrain);
      sink.off('close', onClose);
    };
    const onDrain = () => {
      cleanup();
      resolve();
    };
    const onClose = () => {
      cleanup();
      reject(new Error('tar stream closed while an entry was written'));
    };
    sink.on('drain', onDrain);
    sink.on('close', onClose);
  });
}

function readSmallFile(path: string, size: number): Buffer {
  let fd: number;
  try {
    fd = openSync(path, fsc.O_RDONLY | fsc.O_NOFOLLOW);
  } catch (err) {
    throw new LayerSourceError(path, `cannot open: ${messageOf(err)}`, { cause: err });
  }
  try {
    const buf = Buffer.allocUnsafe(size);
    let off = 0;
    while (off < size) {
      const n = readSync(fd, buf, off, size - off, off);
      if (n === 0) throw new LayerSourceError(path, `file shrank while it was read (expected ${size} bytes)`);
      off += n;
    }
    return buf;
  } finally {
    closeSync(fd);
  }
}

function lstatOrThrow(path: string): Stats {
  try {
    return lstatSync(path);
  } catch (err) {
    throw new LayerSourceError(path, `cannot stat: ${messageOf(err)}`, { cause: err });
  }
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** Tar names are UTF-8 (PAX); a name that is not cannot be carried faithfully. */
function strictUtf8(raw: Buffer, where: string): string {
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
