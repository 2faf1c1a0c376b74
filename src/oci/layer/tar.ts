/**
 * The one place kiln touches tar-stream: header construction for the writer, header reading for the
 * extractor, and a binary-safe replacement of tar-stream's PAX record coder.
 *
 * Why the replacement: xattr values are bytes (security.capability is a binary struct), and PAX
 * `SCHILY.xattr.*` records carry them verbatim. tar-stream encodes PAX values as UTF-8 strings and
 * decodes them with a UTF-8 decoder, which corrupts any value that is not valid UTF-8. The coder
 * below produces byte-identical records for string values, also accepts byte values, and keeps the
 * raw bytes of xattr records beside the decoded strings (under a symbol key, so code that iterates the
 * record object sees exactly what tar-stream would have given it).
 */
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { extract as tarExtract, pack as tarPack, type Extract, type Header, type Pack } from 'tar-stream';

export type { Extract, Header, Pack };

/** PAX key prefix for extended attributes (GNU tar, Go archive/tar, containerd, BuildKit). */
export const PAX_XATTR_PREFIX = 'SCHILY.xattr.';

/** Raw bytes of PAX `SCHILY.xattr.*` values on a decoded `header.pax` object. */
const RAW_PAX = Symbol.for('kiln.tar.pax.raw');

type PaxValue = string | Uint8Array | number;

interface HeadersModule {
  encode(header: object): Buffer | null;
  encodePax(opts: { name?: string; linkname?: string | null; pax?: Record<string, PaxValue> | null }): Buffer;
  decodePax(buf: Buffer): Record<string, string>;
}

let installed: HeadersModule | undefined;

/** tar-stream's header coder (the very module its pack and extract use), with binary-safe PAX installed. */
function installBinarySafePax(): HeadersModule {
  if (installed) return installed;
  const require = createRequire(import.meta.url);
  const headers = require(join(dirname(require.resolve('tar-stream')), 'headers.js')) as Partial<HeadersModule>;
  if (typeof headers.encode !== 'function' || typeof headers.encodePax !== 'function' || typeof headers.decodePax !== 'function') {
    // An internal error, not user input: the installed tar-stream is not the one kiln was written for.
    throw new Error('tar-stream has no headers.encode/encodePax/decodePax; binary-safe PAX records cannot be installed');
  }
  headers.encodePax = encodePax;
  headers.decodePax = decodePax;
  installed = headers as HeadersModule;
  return installed;
}

function paxRecord(key: string, value: PaxValue): Buffer {
  const body = Buffer.concat([
    Buffer.from(` ${key}=`, 'utf8'),
    typeof value === 'string' || typeof value === 'number' ? Buffer.from(String(value), 'utf8') : value,
    Buffer.from('\n'),
  ]);
  // The length prefix counts itself: grow the digit count until it fits.
  let digits = String(body.length).length;
  if (body.length + digits >= 10 ** digits) digits++;
  return Buffer.concat([Buffer.from(String(body.length + digits)), body]);
}

function encodePax(opts: { name?: string; linkname?: string | null; pax?: Record<string, PaxValue> | null }): Buffer {
  const records: Buffer[] = [];
  if (opts.name) records.push(paxRecord('path', opts.name));
  if (opts.linkname) records.push(paxRecord('linkpath', opts.linkname));
  if (opts.pax) for (const [key, value] of Object.entries(opts.pax)) records.push(paxRecord(key, value));
  return Buffer.concat(records);
}

function decodePax(buf: Buffer): Record<string, string> {
  const result: Record<string, string> & { [RAW_PAX]?: Map<string, Buffer> } = {};
  const raw = new Map<string, Buffer>();
  result[RAW_PAX] = raw;
  while (buf.length) {
    let i = 0;
    while (i < buf.length && buf[i] !== 0x20) i++;
    const len = parseInt(buf.subarray(0, i).toString('latin1'), 10);
    if (!len || len > buf.length || len <= i + 1) return result;
    const record = buf.subarray(i + 1, len - 1);
    const eq = record.indexOf(0x3d);
    if (eq === -1) return result;
    const key = record.subarray(0, eq).toString('utf8');
    const value = record.subarray(eq + 1);
    result[key] = value.toString('utf8');
    if (key.startsWith(PAX_XATTR_PREFIX)) raw.set(key, Buffer.from(value));
    buf = buf.subarray(len);
  }
  return result;
}

export function createPack(): Pack {
  installBinarySafePax();
  return tarPack();
}

export function createExtract(): Extract {
  installBinarySafePax();
  return tarExtract();
}

/** The extended attributes recorded in a decoded header, as bytes, sorted by name. */
export function headerXattrs(header: Header): Array<[string, Buffer]> {
  const pax = header.pax as (Record<string, string> & { [RAW_PAX]?: Map<string, Buffer> }) | null | undefined;
  if (!pax) return [];
  const raw = pax[RAW_PAX];
  const out: Array<[string, Buffer]> = [];
  for (const [key, value] of Object.entries(pax)) {
    if (!key.startsWith(PAX_XATTR_PREFIX)) continue;
    const name = key.slice(PAX_XATTR_PREFIX.length);
    if (!name) continue;
    out.push([name, raw?.get(key) ?? Buffer.from(value, 'utf8')]);
  }
  return out.sort((a, b) => compareBytes(a[0], b[0]));
}

/** A PAX record of the header as a string, if present. */
export function paxString(header: Header, key: string): string | undefined {
  const pax = header.pax as Record<string, string> | null | undefined;
  const value = pax?.[key];
  return typeof value === 'string' ? value : undefined;
}

export type EntryType =
  | 'file'
  | 'link'
  | 'symlink'
  | 'directory'
  | 'character-device'
  | 'block-device'
  | 'fifo';

/** One tar entry as the writer describes it, before tar-stream encodes it. */
export interface EntryHeader {
  /** Relative path; directories end with `/`. */
  name: string;
  type: EntryType;
  /** Permission bits plus setuid/setgid/sticky (`& 0o7777`). */
  mode: number;
  uid: number;
  gid: number;
  /** Bytes of content (regular files only). */
  size: number;
  /** Whole seconds since the epoch. */
  mtime: number;
  linkname?: string;
  devmajor?: number;
  devminor?: number;
  /** Extended attributes, already filtered and sorted by name. */
  xattrs?: Array<[string, Uint8Array]>;
}

/** tar-stream writes ids as 6 octal digits and times as 11; larger values go to PAX records. */
const USTAR_MAX_ID = 0o777777;
const USTAR_MAX_TIME = 0o77777777777;

const TYPE_BITS: Record<EntryType, number> = {
  file: 0o100000,
  link: 0o100000,
  symlink: 0o120000,
  directory: 0o040000,
  'character-device': 0o020000,
  'block-device': 0o060000,
  fifo: 0o010000,
};

/** tar-stream's header object for an entry, with PAX records for whatever ustar cannot hold. */
export function toPackHeader(h: EntryHeader): Header & { pax?: Record<string, PaxValue> } {
  const pax: Record<string, PaxValue> = {};
  let uid = h.uid;
  let gid = h.gid;
  if (uid > USTAR_MAX_ID) {
    pax.uid = String(uid);
    uid = 0;
  }
  if (gid > USTAR_MAX_ID) {
    pax.gid = String(gid);
    gid = 0;
  }
  let mtime = h.mtime;
  if (mtime < 0 || mtime > USTAR_MAX_TIME) {
    pax.mtime = String(mtime);
    mtime = mtime < 0 ? 0 : USTAR_MAX_TIME;
  }
  for (const [name, value] of h.xattrs ?? []) pax[PAX_XATTR_PREFIX + name] = value;
  return {
    name: h.name,
    type: h.type,
    // tar-stream replaces a falsy mode with 0644/0755 and masks the field with 0o7777, so the file type
    // bits are added to keep a genuine mode 0 (whiteouts, `chmod 000` files) intact.
    mode: TYPE_BITS[h.type] | (h.mode & 0o7777),
    uid,
    gid,
    size: h.type === 'file' ? h.size : 0,
    mtime: new Date(mtime * 1000),
    linkname: h.linkname ?? '',
    // Numeric owners only: names would depend on the host's /etc/passwd.
    uname: '',
    gname: '',
    devmajor: h.devmajor ?? 0,
    devminor: h.devminor ?? 0,
    ...(Object.keys(pax).length > 0 ? { pax } : {}),
  };
}

const BLOCK = 512;

/** Zero bytes that pad `size` bytes of content to a whole tar block. */
export function blockPadding(size: number): number {
  const over = size % BLOCK;
  return over ? BLOCK - over : 0;
}

/** The two zero blocks that end a tar. */
export const END_OF_ARCHIVE_BYTES = 2 * BLOCK;

/**
 * The header blocks tar-stream's pack writes for `h` (its `entry` defaults, then `_encode`: a
 * ustar header, or a PAX header, its records and padding, then the ustar header), for writers that
 * assemble a tar themselves and must match the pack's bytes. Fills in the defaults on `h`.
 */
export function encodeHeaderBlocks(h: ReturnType<typeof toPackHeader>): Buffer[] {
  const coder = installBinarySafePax();
  if (!h.size || h.type === 'symlink') h.size = 0;
  if (!h.mode) h.mode = h.type === 'directory' ? 0o755 : 0o644;
  if (!h.uid) h.uid = 0;
  if (!h.gid) h.gid = 0;
  if (!h.pax) {
    const buf = coder.encode(h);
    if (buf) return [buf];
  }
  const pax = coder.encodePax({ name: h.name, linkname: h.linkname, pax: h.pax ?? null });
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
  const blocks = [coder.encode(outer)!, pax];
  const pad = blockPadding(pax.byteLength);
  if (pad) blocks.push(Buffer.alloc(pad));
  outer.size = h.size;
  outer.type = h.type;
  blocks.push(coder.encode(outer)!);
  return blocks;
}

export function compareBytes(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}
