/**
 * ADD's archive handling, as BuildKit does it through moby/go-archive:
 *
 * Detection is by content, never by name: the file must be a regular file whose bytes, after
 * decompression by magic number (gzip, bzip2, xz, zstd, or none), start with a valid tar header.
 * Anything else (including an empty tar) is copied as a plain file.
 *
 * Extraction goes into the destination directory (created 0755, owned by --chown or root, whether or
 * not the destination ends in `/`) the way go-archive's chrooted Untar does: names are cleaned and a
 * leading `/` is dropped; a name that climbs out with `..`, a symlink whose target (taken from the
 * entry's directory) leaves the destination, and a hardlink to a path outside it are refused;
 * symlinks inside the destination resolve as if it were the root; missing parent directories are
 * created 0755 root:root; an entry replaces what is there unless both are directories, in which case
 * the directory takes the entry's metadata; owners come from the archive unless --chown is given;
 * --chmod does not apply. Device nodes and FIFOs are skipped (BuildKit skips them in a user
 * namespace too).
 *
 * Nothing is written to the host under a name taken from the archive: file contents go to numbered
 * files in the step's private temp directory, and the archive's names only become tar entry names.
 * A name starting with `.wh.` would be a whiteout in the layer, so such an archive is refused.
 */
import { spawn } from 'node:child_process';
import { createReadStream, promises as fsp } from 'node:fs';
import { PassThrough, pipeline, type Readable } from 'node:stream';
import { createGunzip } from 'node:zlib';
import { createExtract, headerXattrs, paxString, type Header } from '../../oci/layer/tar.js';
import { WHITEOUT_PREFIX } from '../../oci/layer/index.js';
import { components, joinAbs } from '../fsview/index.js';
import type { DestTree, Planned } from './dest.js';
import { CopyError, MissingToolError, UnsafeArchiveError } from './errors.js';
import type { TempSpace } from './temp.js';
import type { CopyWarning } from './types.js';

export type ArchiveCompression = 'none' | 'gzip' | 'bzip2' | 'xz' | 'zstd';

const TOOLS: Record<Exclude<ArchiveCompression, 'none' | 'gzip'>, { program: string; pkg: string }> = {
  bzip2: { program: 'bzip2', pkg: 'bzip2' },
  xz: { program: 'xz', pkg: 'xz-utils' },
  zstd: { program: 'zstd', pkg: 'zstd' },
};

/** Compression by magic number (go-archive's DetectCompression). */
export function detectArchiveCompression(head: Uint8Array): ArchiveCompression {
  const starts = (magic: number[]) => magic.every((b, i) => head[i] === b);
  if (starts([0x1f, 0x8b, 0x08])) return 'gzip';
  if (starts([0x42, 0x5a, 0x68])) return 'bzip2';
  if (starts([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00])) return 'xz';
  if (starts([0x28, 0xb5, 0x2f, 0xfd])) return 'zstd';
  return 'none';
}

/** The decompressed content of a host file. */
export function openDecompressed(path: string, compression: ArchiveCompression, label: string): Readable {
  if (compression === 'none') return createReadStream(path);
  if (compression === 'gzip') {
    const gunzip = createGunzip({ chunkSize: 256 * 1024 });
    return pipeline(createReadStream(path), gunzip, () => undefined) as unknown as Readable;
  }
  const tool = TOOLS[compression];
  return toolStream(tool.program, ['-d', '-c', '--', path], tool.pkg, `unpacking ${label} (${compression})`);
}

/** Runs a decompressor over a file; its output ends only once it has exited successfully. */
function toolStream(program: string, args: string[], pkg: string, what: string): Readable {
  const out = new PassThrough({ highWaterMark: 1024 * 1024 });
  const child = spawn(program, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  let stdoutDone = false;
  let exit: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  const settle = () => {
    if (!stdoutDone || !exit || out.destroyed) return;
    if (exit.code === 0) out.end();
    else out.destroy(new CopyError('ADD_DECOMPRESS', `${what}: ${stderr.trim() || `${program} exited with ${exit.signal ?? exit.code}`}`));
  };
  child.on('error', (err: NodeJS.ErrnoException) => {
    out.destroy(err.code === 'ENOENT' ? new MissingToolError(program, pkg, what) : err);
  });
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (s: string) => {
    if (stderr.length < 2048) stderr += s;
  });
  child.stdout.on('data', (chunk: Buffer) => {
    if (!out.write(chunk)) child.stdout.pause();
  });
  out.on('drain', () => child.stdout.resume());
  child.stdout.on('end', () => {
    stdoutDone = true;
    settle();
  });
  child.on('close', (code, signal) => {
    exit = { code, signal };
    settle();
  });
  out.on('close', () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  return out;
}

/**
 * The compression of `path` if it is a tar archive ADD should unpack, else undefined. Reads only
 * the first block after decompression.
 */
export async function archiveCompression(path: string, label: string): Promise<ArchiveCompression | undefined> {
  const fh = await fsp.open(path, 'r');
  let head: Buffer;
  try {
    const buf = Buffer.alloc(8);
    const { bytesRead } = await fh.read(buf, 0, buf.length, 0);
    head = buf.subarray(0, bytesRead);
  } finally {
    await fh.close();
  }
  const compression = detectArchiveCompression(head);
  const first = await readPrefix(openDecompressed(path, compression, label), 512).catch((err: unknown) => {
    // A missing decompressor is the user's to fix; corrupt compressed data just means "not an archive".
    if (err instanceof MissingToolError) throw err;
    return undefined;
  });
  return first && isTarHeader(first) ? compression : undefined;
}

async function readPrefix(stream: Readable, n: number): Promise<Buffer | undefined> {
  const chunks: Buffer[] = [];
  let length = 0;
  try {
    for await (const chunk of stream) {
      chunks.push(chunk as Buffer);
      length += (chunk as Buffer).length;
      if (length >= n) break;
    }
  } finally {
    stream.destroy();
  }
  return length >= n ? Buffer.concat(chunks).subarray(0, n) : undefined;
}

/** A ustar/GNU/v7 header block with a valid checksum (what Go's tar.Reader.Next accepts first). */
export function isTarHeader(block: Buffer): boolean {
  if (block.length < 512 || block.every((b) => b === 0)) return false;
  const field = block.subarray(148, 156).toString('latin1').replace(/[\0 ]+$/g, '').replace(/^[ ]+/, '');
  if (!/^[0-7]+$/.test(field)) return false;
  const stored = parseInt(field, 8);
  let unsigned = 0;
  let signed = 0;
  for (let i = 0; i < 512; i++) {
    const b = i >= 148 && i < 156 ? 0x20 : block[i]!;
    unsigned += b;
    signed += b > 127 ? b - 256 : b;
  }
  return stored === unsigned || stored === signed;
}

export interface UnpackOptions {
  tree: DestTree;
  /** Host path of the archive. */
  archive: string;
  compression: ArchiveCompression;
  /** How the archive is named in messages (the source as written). */
  label: string;
  /** The destination directory, resolved. */
  dest: string;
  /** --chown: every unpacked entry gets it. */
  owner: { uid: number; gid: number } | undefined;
  temp: TempSpace;
  signal?: AbortSignal;
  onWarning?: (w: CopyWarning) => void;
}

type EntryBody = AsyncIterable<unknown> & { header: Header };

/** Unpacks an archive into the destination plan. */
export async function unpackArchive(o: UnpackOptions): Promise<void> {
  const { tree, dest, owner } = o;
  await tree.mkdirAll(dest, { mode: 0o755, uid: owner?.uid ?? 0, gid: owner?.gid ?? 0 });
  const input = openDecompressed(o.archive, o.compression, o.label);
  const ex = createExtract();
  let parseError: Error | undefined;
  ex.on('error', (err: unknown) => {
    parseError ??= err instanceof Error ? err : new Error(String(err));
  });
  input.on('error', (err) => ex.destroy(err));
  input.pipe(ex as unknown as NodeJS.WritableStream);
  /** Host temp file → the planned names sharing it (hardlinks share metadata). */
  const inodes = new Map<string, Planned[]>();
  try {
    for await (const entry of ex as AsyncIterable<EntryBody>) {
      o.signal?.throwIfAborted();
      await unpackEntry(o, entry.header, entry, inodes);
      for await (const _ of entry) void _;
    }
  } catch (err) {
    input.unpipe(ex as unknown as NodeJS.WritableStream);
    input.destroy();
    ex.destroy();
    if (err instanceof CopyError) throw err;
    const cause = parseError ?? err;
    throw new CopyError('ADD_BAD_ARCHIVE', `failed to unpack ${o.label}: ${cause instanceof Error ? cause.message : String(cause)}`, { cause });
  }
}

async function unpackEntry(o: UnpackOptions, header: Header, body: EntryBody, inodes: Map<string, Planned[]>): Promise<void> {
  const { tree, dest } = o;
  const type = header.type as string | null;
  const parts = archiveName(o, header.name);
  if (parts.length === 0) return; // the archive's own root: the destination keeps its metadata
  const name = parts.join('/');
  const base = parts[parts.length - 1]!;
  if (base.startsWith(WHITEOUT_PREFIX)) {
    throw new UnsafeArchiveError(o.label, name, `entry "${name}" has a whiteout name (.wh.*), which an image layer cannot hold as a file`);
  }
  if (type === 'character-device' || type === 'block-device' || type === 'fifo') {
    o.onWarning?.({ code: 'archive-entry-skipped', message: `${o.label}: ${type} "${name}" skipped` });
    return;
  }

  // Parents resolve inside the destination as if it were the root (go-archive runs in a chroot there).
  const parentRel = '/' + parts.slice(0, -1).join('/');
  const parent = await tree.resolveUnder(dest, parentRel, true);
  await tree.mkdirAll(parent, { mode: 0o755, uid: 0, gid: 0 });
  const target = joinAbs(parent, base);
  const existing = await tree.lookup(target);
  const isDir = type === 'directory';
  if (existing?.planned && !(existing.type === 'directory' && isDir)) tree.remove(target);

  const uid = o.owner?.uid ?? numericPax(header, 'uid') ?? header.uid;
  const gid = o.owner?.gid ?? numericPax(header, 'gid') ?? header.gid;
  const mode = header.mode & 0o7777;
  const rawTime = numericPax(header, 'mtime') ?? header.mtime.getTime() / 1000;
  const mtime = rawTime < 0 || !Number.isFinite(rawTime) ? 0 : Math.floor(rawTime);
  const xattrs = Object.fromEntries(headerXattrs(header));
  const meta = { uid, gid, mtime, xattrs };

  switch (type) {
    case 'directory': {
      const prev = existing?.type === 'directory' ? existing.planned : undefined;
      const spec = { type: 'directory' as const, mode, ...meta };
      if (prev) prev.spec = spec;
      else tree.put({ path: target, type: 'directory', origin: 'copied', spec });
      return;
    }
    case 'file':
    case 'contiguous-file': {
      const tmp = await o.temp.path('unpacked');
      const fh = await fsp.open(tmp, 'wx', 0o600);
      try {
        for await (const chunk of body) await fh.write(chunk as Buffer);
      } finally {
        await fh.close();
      }
      const planned: Planned = { path: target, type: 'file', origin: 'copied', spec: { source: tmp, mode, ...meta } };
      tree.put(planned);
      inodes.set(tmp, [planned]);
      return;
    }
    case 'symlink': {
      const linkname = header.linkname ?? '';
      if (escapes(parts.length - 1, linkname)) {
        throw new UnsafeArchiveError(o.label, name, `invalid symlink "${name}" -> "${linkname}": it points outside of ${dest}`);
      }
      tree.put({ path: target, type: 'symlink', origin: 'copied', linkname, spec: { type: 'symlink', linkname, ...meta } });
      return;
    }
    case 'link': {
      const linkname = header.linkname ?? '';
      if (escapes(0, linkname)) {
        throw new UnsafeArchiveError(o.label, name, `invalid hardlink "${name}" -> "${linkname}": it points outside of ${dest}`);
      }
      const from = await tree.resolveUnder(dest, '/' + components(linkname).join('/'), false);
      const node = await tree.lookup(from);
      if (!node || node.type === 'directory') {
        throw new CopyError('ADD_BAD_ARCHIVE', `failed to unpack ${o.label}: hardlink "${name}" -> "${linkname}": ${node ? 'target is a directory' : 'target not found'}`);
      }
      const source = node.planned?.spec.source;
      if (node.planned && source && inodes.has(source)) {
        // Same inode: link the temp copy, and the header's metadata lands on every name of it.
        const tmp = await o.temp.path('unpacked');
        await fsp.link(source, tmp);
        const group = inodes.get(source)!;
        const planned: Planned = { path: target, type: node.type, origin: 'copied', spec: { ...node.planned.spec, source: tmp } };
        group.push(planned);
        inodes.set(tmp, group);
        tree.put(planned);
        for (const p of group) p.spec = { ...p.spec, mode, ...meta };
        return;
      }
      // A link to a file of the rootfs (or to a symlink): the layer carries a copy of it.
      const host = node.planned ? node.planned.spec.source : node.entry?.hostPath;
      const spec = host
        ? { source: host, mode, ...meta }
        : { ...node.planned!.spec, mode, ...meta };
      tree.put({ path: target, type: node.type, origin: 'copied', linkname: node.planned?.linkname, spec });
      return;
    }
    default:
      throw new CopyError('ADD_BAD_ARCHIVE', `failed to unpack ${o.label}: entry "${name}" has an unsupported type (${type ?? 'unknown'})`);
  }
}

/** The cleaned components of an archive name (leading `/` dropped), refusing names that climb out. */
function archiveName(o: UnpackOptions, raw: string): string[] {
  if (raw.includes('\0')) throw new UnsafeArchiveError(o.label, raw, `entry name contains a NUL byte`);
  const out: string[] = [];
  for (const part of raw.split('/')) {
    if (part === '' || part === '.') continue;
    if (part === '..') {
      if (out.length === 0) throw new UnsafeArchiveError(o.label, raw, `entry "${raw}" is outside of ${o.dest}`);
      out.pop();
      continue;
    }
    out.push(part);
  }
  return out;
}

/** Whether a link target, taken from a directory `depth` levels below the destination, climbs above it. */
function escapes(depth: number, target: string): boolean {
  let d = depth;
  for (const part of target.split('/')) {
    if (part === '' || part === '.') continue;
    if (part === '..') {
      if (--d < 0) return true;
    } else {
      d++;
    }
  }
  return false;
}

function numericPax(header: Header, key: string): number | undefined {
  const value = paxString(header, key);
  if (value === undefined) return undefined;
  const n = Number(value);
  return Number.isFinite(n) ? n : undefined;
}
