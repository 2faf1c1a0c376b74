/**
 * The content checksums BuildKit uses as cache keys for files of a build context
 * (`cache/contenthash`), reproduced byte for byte so kiln's keys mean what BuildKit's mean.
 *
 * - A file, symlink, device or FIFO: SHA-256 over a "tarsum v1" header followed by the file's
 *   content (regular files only). The header lists, as `key` + `value` strings with nothing between
 *   them: name (always empty: the name is hashed by the parent), mode (permission bits plus
 *   setuid/setgid/sticky, in decimal), uid, gid, size, typeflag, linkname, uname, gname, devmajor,
 *   devminor, then the xattrs (sorted). The modification time is deliberately absent.
 * - A directory: SHA-256 over `\0` + its own header digest, then for each child in byte order of
 *   its name, `\0` + name + the child's digest (a subdirectory contributes its recursive digest).
 *   The context root's own header is BuildKit's placeholder, the digest of nothing: the client
 *   never sends metadata for the root.
 * - A list (wildcard matches): SHA-256 over each entry's path relative to the wildcard's fixed
 *   prefix, with `/` written as `\0`, followed by its digest.
 *
 * Ownership: BuildKit's client resets uid and gid to 0 before it sends the context, so files hash
 * the same whoever owns them; the header always says 0.
 */
import { createHash } from 'node:crypto';
import { createRequire } from 'node:module';
import { InputFileError } from '../errors.js';
import { sha256, type Digest } from '../oci/digest.js';

/** The digest of no bytes: an empty wildcard match, and the context root's header. */
export const EMPTY_DIGEST: Digest = sha256('');

export type EntryType = 'file' | 'dir' | 'symlink' | 'fifo' | 'socket' | 'char-device' | 'block-device';

const S_IFMT = 0o170000;

export function entryTypeOf(mode: number): EntryType {
  switch (mode & S_IFMT) {
    case 0o040000:
      return 'dir';
    case 0o120000:
      return 'symlink';
    case 0o010000:
      return 'fifo';
    case 0o140000:
      return 'socket';
    case 0o020000:
      return 'char-device';
    case 0o060000:
      return 'block-device';
    default:
      return 'file';
  }
}

/**
 * Tar type flags as Go's `tar.FileInfoHeader` assigns them. Sockets hash as regular files: the
 * socket bit is cleared before the header is made.
 */
const TYPEFLAG: Record<EntryType, string> = {
  file: '0',
  socket: '0',
  dir: '5',
  symlink: '2',
  'char-device': '3',
  'block-device': '4',
  fifo: '6',
};

/** The metadata the header covers. */
export interface HeaderInput {
  /** `st_mode`, type bits included. */
  mode: number;
  /** `st_size`; only regular files (and sockets) record it. */
  size: bigint | number;
  /** `st_rdev`; only devices record it. */
  rdev: bigint | number;
  /** Raw target of a symlink. */
  linkTarget?: Uint8Array;
  /** Hashed xattrs, sorted by name (see {@link readHashedXattrs}). */
  xattrs?: ReadonlyArray<readonly [string, Uint8Array]>;
}

/** The tarsum v1 header of an entry; for a regular file its content follows it in the hash. */
export function entryHeader(h: HeaderInput): Buffer {
  const type = entryTypeOf(h.mode);
  let perm = h.mode & 0o7777;
  if (type === 'symlink') perm |= 0o777;
  const size = type === 'file' || type === 'socket' ? BigInt(h.size) : 0n;
  let major = 0n;
  let minor = 0n;
  if (type === 'char-device' || type === 'block-device') {
    // fsutil's (glibc-incompatible for large numbers) split of the device number.
    const rdev = BigInt(h.rdev);
    major = (rdev >> 8n) & 0xfffn;
    minor = (rdev & 0xffn) | ((rdev >> 12n) & 0xfff00n);
  }
  const head = `namemode${perm}uid0gid0size${size}typeflag${TYPEFLAG[type]}linkname`;
  const tail = `unamegnamedevmajor${major}devminor${minor}`;
  const link = type === 'symlink' ? h.linkTarget : undefined;
  let length = head.length + tail.length + (link?.length ?? 0);
  for (const [name, value] of h.xattrs ?? []) length += Buffer.byteLength(name, 'utf8') + value.length;
  // One allocation: this runs once per file of the context.
  const buf = Buffer.allocUnsafe(length);
  let off = buf.write(head, 0, 'latin1');
  if (link) off += Buffer.from(link.buffer, link.byteOffset, link.length).copy(buf, off);
  off += buf.write(tail, off, 'latin1');
  for (const [name, value] of h.xattrs ?? []) {
    off += buf.write(name, off, 'utf8');
    off += Buffer.from(value.buffer, value.byteOffset, value.length).copy(buf, off);
  }
  return buf;
}

/** The digest of an entry that has no content to hash (directory header, symlink, device, empty file). */
export function headerDigest(h: HeaderInput): Digest {
  return `sha256:${createHash('sha256').update(entryHeader(h)).digest('hex')}`;
}

/**
 * Which xattrs enter the hash: fsutil drops `com.apple.*` when it sends the context, and the tarsum
 * header keeps `security.capability` but no other `security.*` or `system.*` name (SELinux labels
 * and ACLs would otherwise make keys differ between machines).
 */
let xattr: typeof import('@napi-rs/xattr') | undefined;

/**
 * The native xattr module, loaded on first use: a rebuild whose files and directories all come
 * from the digest index reads no xattrs, and loading the addon costs more than the rest of a small
 * context's checksum.
 */
function xattrModule(): typeof import('@napi-rs/xattr') {
  xattr ??= createRequire(import.meta.url)('@napi-rs/xattr') as typeof import('@napi-rs/xattr');
  return xattr;
}

export const XATTR_RULE = {
  /** Names with these prefixes are left out... */
  skipPrefixes: ['com.apple.', 'security.', 'system.'],
  /** ...except these. */
  keep: ['security.capability'],
} as const;

export function isHashedXattr(name: string): boolean {
  if ((XATTR_RULE.keep as readonly string[]).includes(name)) return true;
  return !XATTR_RULE.skipPrefixes.some((p) => name.startsWith(p));
}

/** Byte order of UTF-8 names (Go's sort of strings). */
function compareBytes(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

/** The errno name a @napi-rs/xattr failure carries only in its message ("… (os error N)"). */
function xattrErrno(err: unknown): string | undefined {
  const m = /os error (\d+)/.exec(String((err as { message?: unknown } | undefined)?.message));
  if (!m) return (err as NodeJS.ErrnoException | undefined)?.code;
  return ({ 2: 'ENOENT', 20: 'ENOTDIR', 61: 'ENODATA', 95: 'ENOTSUP' } as Record<string, string>)[m[1]!] ?? `errno ${m[1]}`;
}

/**
 * The xattrs of `abs` (not following a symlink) that enter its checksum, sorted by name. A file
 * system without xattr support has none; an attribute removed between listing and reading is
 * skipped, as fsutil does.
 * @throws InputFileError when they cannot be listed.
 */
export function readHashedXattrs(abs: string, display: string): Array<[string, Buffer]> {
  const { getAttributeSync, listAttributesSync } = xattrModule();
  let names: string[];
  try {
    names = listAttributesSync(abs);
  } catch (err) {
    const code = xattrErrno(err);
    if (code === 'ENOTSUP') return [];
    if (code === 'ENOENT' || code === 'ENOTDIR') throw Object.assign(new Error(`${abs} vanished`), { code });
    throw new InputFileError(display, `cannot list extended attributes: ${(err as Error).message}`, { cause: err });
  }
  if (names.length === 0) return [];
  const out: Array<[string, Buffer]> = [];
  for (const name of names.filter(isHashedXattr).sort(compareBytes)) {
    let value: Buffer | null = null;
    try {
      value = getAttributeSync(abs, name);
    } catch {
      value = null;
    }
    if (value) out.push([name, value]);
  }
  return out;
}

/** A directory's recursive digest from its header digest and its children's (sorted by name). */
export function directoryDigest(header: Digest, children: ReadonlyArray<readonly [string, Digest]>): Digest {
  // One update of the whole record: the hash is the same, and a big directory costs one call, not three per child.
  let record = `\0${header}`;
  for (const [name, digest] of children) record += `\0${name}${digest}`;
  return `sha256:${createHash('sha256').update(record).digest('hex')}`;
}

/**
 * The digest of a list of entries (wildcard matches and what lies below matched directories):
 * each path, relative to the fixed prefix and starting with `/`, with `/` written as `\0`.
 */
export function fileListDigest(entries: ReadonlyArray<readonly [string, Digest]>): Digest {
  const h = createHash('sha256');
  for (const [path, digest] of entries) {
    h.update(path === '' ? '\0' : path.replaceAll('/', '\0'));
    h.update(digest);
  }
  return `sha256:${h.digest('hex')}`;
}
