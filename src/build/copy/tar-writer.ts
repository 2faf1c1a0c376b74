/**
 * The tar of a COPY/ADD layer, byte for byte what `writeTarEntries` writes for the same entries
 * (the same order, headers, PAX records, hardlinks and padding: the layer digest must not depend
 * on which writer made it), produced for throughput: each entry is examined once, synchronously,
 * and headers and file contents are written straight into large output chunks. A copy of a big
 * context is 20,000 small entries, where the general writer's per-entry streams, promises and
 * small chunks cost more than reading the files.
 *
 * Headers are encoded by the same tar-stream header coder the general writer drives (with kiln's
 * binary-safe PAX records installed), through the same `toPackHeader`.
 */
import { closeSync, constants as fsc, lstatSync, openSync, readSync, readlinkSync, type Stats } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { getAttributeSync, listAttributesSync } from '@napi-rs/xattr';
import type { TarEntrySpec, TarWriteOptions } from '../../oci/layer/index.js';
import { LayerSourceError } from '../../oci/layer/errors.js';
import { WHITEOUT_OPAQUE, WHITEOUT_PREFIX, defaultXattrFilter, destinationComponents, isOverlayXattr } from '../../oci/layer/paths.js';
import { createPack, toPackHeader, type EntryHeader } from '../../oci/layer/tar.js';
import { errnoOf, messageOf } from '../../oci/layer/util.js';
import { splitDev } from '../../oci/layer/writer.js';

/** Bytes of output gathered before they are handed on. */
const CHUNK = 1024 * 1024;
const BLOCK = 512;

type PackHeader = ReturnType<typeof toPackHeader>;

interface HeaderCoder {
  encode(header: object): Buffer | null;
  encodePax(opts: { name?: string; linkname?: string | null; pax?: PackHeader['pax'] | null }): Buffer;
}

let coder: HeaderCoder | undefined;

/** tar-stream's header coder, the very module its pack uses, with binary-safe PAX installed. */
function headerCoder(): HeaderCoder {
  if (coder) return coder;
  // Creating a pack installs kiln's PAX coder into tar-stream's header module (see oci/layer/tar.ts).
  createPack().destroy();
  const require = createRequire(import.meta.url);
  coder = require(join(dirname(require.resolve('tar-stream')), 'headers.js')) as HeaderCoder;
  return coder;
}

/** The header blocks tar-stream's pack writes for an entry (its `entry` defaults, then `_encode`). */
function encodeHeader(h: PackHeader): Buffer[] {
  const c = headerCoder();
  if (!h.size || h.type === 'symlink') h.size = 0;
  if (!h.mode) h.mode = h.type === 'directory' ? 0o755 : 0o644;
  if (!h.uid) h.uid = 0;
  if (!h.gid) h.gid = 0;
  if (!h.pax) {
    const buf = c.encode(h);
    if (buf) return [buf];
  }
  const pax = c.encodePax({ name: h.name, linkname: h.linkname, pax: h.pax ?? null });
  const outer = {
    name: 'PaxHeader',
    mode: h.mode,
    uid: h.uid,
    gid: h.gid,
    size: pax.byteLength,
    mtime: h.mtime,
    type: 'pax-header',
    linkname: h.linkname && 'PaxHeader',
    uname: h.uname,
    gname: h.gname,
    devmajor: h.devmajor,
    devminor: h.devminor,
  };
  const blocks = [c.encode(outer)!, pax];
  const pad = padding(pax.byteLength);
  if (pad) blocks.push(Buffer.alloc(pad));
  outer.size = h.size;
  outer.type = h.type;
  blocks.push(c.encode(outer)!);
  return blocks;
}

function padding(size: number): number {
  const over = size % BLOCK;
  return over ? BLOCK - over : 0;
}

/** Output gathered into chunks of about {@link CHUNK} bytes. */
class ChunkWriter {
  private buf = Buffer.allocUnsafe(CHUNK);
  private used = 0;
  readonly full: Buffer[] = [];

  write(data: Uint8Array): void {
    let off = 0;
    while (off < data.byteLength) {
      const n = Math.min(data.byteLength - off, CHUNK - this.used);
      this.buf.set(data.subarray(off, off + n), this.used);
      this.used += n;
      off += n;
      if (this.used === CHUNK) this.rotate();
    }
  }

  zeros(n: number): void {
    while (n > 0) {
      const k = Math.min(n, CHUNK - this.used);
      this.buf.fill(0, this.used, this.used + k);
      this.used += k;
      n -= k;
      if (this.used === CHUNK) this.rotate();
    }
  }

  /** Reads `size` bytes of the open file `fd` straight into the output. */
  readFile(fd: number, size: number, path: string): void {
    let pos = 0;
    while (pos < size) {
      const want = Math.min(size - pos, CHUNK - this.used);
      const n = readSync(fd, this.buf, this.used, want, pos);
      if (n === 0) throw new LayerSourceError(path, `file shrank while it was read (expected ${size} bytes)`);
      this.used += n;
      pos += n;
      if (this.used === CHUNK) this.rotate();
    }
  }

  /** What is left, once everything is written. */
  rest(): Buffer | undefined {
    return this.used > 0 ? this.buf.subarray(0, this.used) : undefined;
  }

  private rotate(): void {
    this.full.push(this.buf);
    this.buf = Buffer.allocUnsafe(CHUNK);
    this.used = 0;
  }
}

interface Listed {
  spec: TarEntrySpec;
  tarName: string;
  key: Buffer;
  /** The source's lstat, taken once. */
  st?: Stats;
}

function lstatOrThrow(path: string): Stats {
  try {
    return lstatSync(path);
  } catch (err) {
    throw new LayerSourceError(path, `cannot stat: ${messageOf(err)}`, { cause: err });
  }
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

function strictUtf8(raw: Buffer, where: string): string {
  try {
    return utf8.decode(raw);
  } catch {
    throw new LayerSourceError(where, 'the name is not valid UTF-8 and cannot be stored in a layer');
  }
}

/** The general writer's entry rules (its EntryBuilder), for sources examined once. */
class Entries {
  private readonly links = new Map<string, { name: string; signature: string }>();
  private readonly filter: ((name: string) => boolean) | undefined;

  constructor(private readonly options: TarWriteOptions) {
    const x = options.xattrs ?? true;
    this.filter = x === true ? defaultXattrFilter : x === false ? undefined : x;
  }

  mtime(seconds: number): number {
    const epoch = this.options.sourceDateEpoch;
    return epoch !== undefined && seconds > epoch ? epoch : seconds;
  }

  get syntheticTime(): number {
    return this.options.sourceDateEpoch ?? 0;
  }

  xattrs(path: string): Array<[string, Uint8Array]> {
    let names: string[];
    try {
      names = listAttributesSync(path);
    } catch (err) {
      if (errnoOf(err) === 'ENOTSUP') return [];
      throw new LayerSourceError(path, `cannot list xattrs: ${messageOf(err)}`, { cause: err });
    }
    if (names.length === 0) return [];
    const out: Array<[string, Uint8Array]> = [];
    for (const name of names) {
      if (isOverlayXattr(name) || !this.filter?.(name)) continue;
      let value: Buffer | undefined;
      try {
        value = getAttributeSync(path, name) ?? undefined;
      } catch (err) {
        if (errnoOf(err) !== 'ENODATA') throw new LayerSourceError(path, `cannot read xattr ${name}: ${messageOf(err)}`, { cause: err });
      }
      if (value) out.push([name, value]);
    }
    return out.sort((a, b) => Buffer.compare(Buffer.from(a[0]), Buffer.from(b[0])));
  }

  /** Header (and content source) of a host entry; undefined for sockets, which tar cannot carry. */
  fromStat(
    path: string,
    name: string,
    st: Stats,
    xattrs: Array<[string, Uint8Array]>,
    o: { uid?: number; gid?: number; mode?: number; mtime?: number; xattrs?: Array<[string, Uint8Array]> },
  ): { header: EntryHeader; size?: number } | undefined {
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
      if (major > 0o777777 || minor > 0o777777) throw new LayerSourceError(path, `device ${major}:${minor} does not fit in a tar header`);
      return { header: { ...base, name, type: st.isCharacterDevice() ? 'character-device' : 'block-device', devmajor: major, devminor: minor } };
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
      if (first && first.signature === signature) return { header: { ...base, xattrs: [], name, type: 'link', linkname: first.name } };
      if (!first) this.links.set(inode, { name, signature });
    }
    return { header: { ...base, name, type: 'file', size: st.size }, size: st.size };
  }
}

/**
 * The layer tar of `entries`, as `writeTarEntries(entries, options)` writes it, in chunks of about
 * a megabyte. Sources are read while the chunks are produced.
 */
export async function* copyLayerTar(entries: Iterable<TarEntrySpec>, options: TarWriteOptions = {}): AsyncGenerator<Buffer> {
  const builder = new Entries(options);
  const list: Listed[] = [];
  for (const spec of entries) {
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
    list.push({ spec, tarName, key: Buffer.from(isDir ? `${tarName}/` : tarName, 'utf8'), ...(st ? { st } : {}) });
  }
  list.sort((a, b) => Buffer.compare(a.key, b.key));
  for (let i = 1; i < list.length; i++) {
    if (list[i - 1]!.tarName === list[i]!.tarName) throw new LayerSourceError(list[i]!.spec.path, 'listed twice');
  }

  const out = new ChunkWriter();
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
      const item = builder.fromStat(spec.source, tarName, st!, xattrs ? [] : builder.xattrs(spec.source), {
        ...(spec.uid !== undefined ? { uid: spec.uid } : {}),
        ...(spec.gid !== undefined ? { gid: spec.gid } : {}),
        ...(spec.mode !== undefined ? { mode: spec.mode & 0o7777 } : {}),
        ...(mtime !== undefined ? { mtime } : {}),
        ...(xattrs ? { xattrs } : {}),
      });
      if (!item) continue;
      for (const b of encodeHeader(toPackHeader(item.header))) out.write(b);
      if (item.header.type === 'file') {
        // Opened even when empty, as the general writer does (an unreadable file fails either way).
        let fd: number;
        try {
          fd = openSync(spec.source, fsc.O_RDONLY | fsc.O_NOFOLLOW);
        } catch (err) {
          throw new LayerSourceError(spec.source, `cannot open: ${messageOf(err)}`, { cause: err });
        }
        try {
          out.readFile(fd, item.size ?? 0, spec.source);
        } finally {
          closeSync(fd);
        }
        out.zeros(padding(item.size ?? 0));
      }
    } else {
      const time = builder.mtime(mtime ?? builder.syntheticTime);
      const owner = { uid: spec.uid ?? 0, gid: spec.gid ?? 0, xattrs: xattrs ?? [] };
      let header: EntryHeader;
      let data: Uint8Array | undefined;
      switch (spec.type) {
        case 'whiteout':
        case 'opaque':
          header = { name: tarName, type: 'file', mode: spec.mode ?? 0, uid: owner.uid, gid: owner.gid, size: 0, mtime: time };
          data = Buffer.alloc(0);
          break;
        case 'directory':
          header = { ...owner, name: `${tarName}/`, type: 'directory', mode: (spec.mode ?? 0o755) & 0o7777, size: 0, mtime: time };
          break;
        case 'symlink':
          if (spec.linkname === undefined) throw new LayerSourceError(spec.path, 'a symlink entry needs a linkname');
          header = { ...owner, name: tarName, type: 'symlink', mode: (spec.mode ?? 0o777) & 0o7777, size: 0, mtime: time, linkname: spec.linkname };
          break;
        default: {
          if (spec.type === undefined && spec.content === undefined) throw new LayerSourceError(spec.path, 'an entry needs a source, a type or content');
          data = typeof spec.content === 'string' ? Buffer.from(spec.content, 'utf8') : (spec.content ?? Buffer.alloc(0));
          header = { ...owner, name: tarName, type: 'file', mode: (spec.mode ?? 0o644) & 0o7777, size: data.byteLength, mtime: time };
        }
      }
      const packHeader = toPackHeader(header);
      // As tar-stream's entry(header, buffer): the buffer's length is the size.
      if (data) packHeader.size = data.byteLength;
      for (const b of encodeHeader(packHeader)) out.write(b);
      if (data && packHeader.size) {
        out.write(data);
        out.zeros(padding(data.byteLength));
      }
    }
    while (out.full.length > 0) yield out.full.shift()!;
  }
  out.zeros(2 * BLOCK);
  while (out.full.length > 0) yield out.full.shift()!;
  const rest = out.rest();
  if (rest) yield rest;
}
