/**
 * Random access to the entries of a tar file.
 *
 * Why an index: a docker-archive may put `manifest.json` anywhere (docker writes it near the end,
 * after every layer), and the blobs an OCI `index.json` names can come in any order, so an archive
 * cannot be read as it streams by without holding layers in memory. Instead the tar is read once,
 * front to back: every entry's name, type, body offset and size are recorded, and every regular
 * file is hashed on the way. Entries are then opened lazily by offset, as often as needed, each read
 * checked against the digest recorded here, so nothing read later can differ from what was indexed
 * (and the hashing makes "does this blob match its name" a lookup instead of a second pass).
 *
 * A compressed archive or a stream cannot be read by offset; those are first spooled, decompressed,
 * into a temp file (see `openArchiveSource`).
 */
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream, promises as fsp } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable, pipeline } from 'node:stream';
import { pipeline as pipelineAsync } from 'node:stream/promises';
import { InputFileError } from '../../errors.js';
import type { Digest } from '../digest.js';
import { CompressionError, peekStream } from '../layer/index.js';
import { createExtract } from '../layer/tar.js';
import { VerifyingStream } from '../layout/index.js';
import { readAll } from '../layout/verify.js';
import { SNIFF_BYTES, decompressAs, readHead, sniffCompression, type StreamCompression } from './compression.js';
import { ArchiveFormatError, printable } from './errors.js';

export type EntryKind = 'file' | 'directory' | 'symlink' | 'link' | 'other';

export interface TarEntry {
  /** Normalised name: no `./` prefix, no trailing slash. */
  name: string;
  kind: EntryKind;
  /** Byte offset of the body in the tar file. */
  offset: number;
  size: number;
  /** sha256 of the body (regular files). */
  digest?: Digest;
  linkname?: string;
}

/** Symlinks followed while resolving one name, as Linux's MAXSYMLINKS. */
const MAX_LINKS = 40;

export class TarArchive {
  private constructor(
    readonly path: string,
    /** How messages name the archive (the path the user gave, or `<stream>`). */
    readonly where: string,
    private readonly entries: Map<string, TarEntry>,
  ) {}

  /** Reads the tar at `file` once, recording and hashing every entry. */
  static async index(file: string, where: string): Promise<TarArchive> {
    const entries = new Map<string, TarEntry>();
    const ex = createExtract();
    const input = createReadStream(file, { highWaterMark: 1 << 20 });
    input.on('error', (err) => ex.destroy(err));
    input.pipe(ex as unknown as NodeJS.WritableStream);
    let current: string | undefined;
    let inBody = false;
    try {
      for await (const entry of ex) {
        const header = entry.header;
        current = header.name;
        // tar-stream records where each body starts (after any PAX or GNU long-name blocks); the
        // digests taken below make a wrong offset impossible to miss, since every later read is
        // checked against them.
        const offset = (header as { byteOffset?: unknown }).byteOffset;
        if (typeof offset !== 'number') throw new Error('tar-stream did not report entry offsets (byteOffset); kiln needs tar-stream 3.1 or newer');
        const kind = kindOf(header.type);
        const record: TarEntry = { name: '', kind, offset, size: kind === 'file' ? header.size ?? 0 : 0 };
        inBody = true;
        if (kind === 'file') {
          const hash = createHash('sha256');
          for await (const chunk of entry) hash.update(chunk as Buffer);
          record.digest = `sha256:${hash.digest('hex')}`;
        } else {
          for await (const _ of entry) void _;
        }
        inBody = false;
        if ((kind === 'symlink' || kind === 'link') && header.linkname) record.linkname = header.linkname;
        const name = normalizeName(header.name);
        // Names that climb out (`..`) can never be what a manifest refers to; they are left out.
        if (name === undefined) continue;
        record.name = name;
        // As when a tar is extracted, a later entry of the same name replaces an earlier one.
        entries.set(name, record);
      }
    } catch (err) {
      input.destroy();
      throw indexError(err, where, entries.size, current, inBody);
    }
    return new TarArchive(file, where, entries);
  }

  get size(): number {
    return this.entries.size;
  }

  names(): IterableIterator<string> {
    return this.entries.keys();
  }

  /** The entry recorded under exactly `name` (normalised), without following links. */
  entry(name: string): TarEntry | undefined {
    const n = normalizeName(name);
    return n === undefined ? undefined : this.entries.get(n);
  }

  /**
   * The regular file `name` designates: symlinks (in any component) are followed inside the archive
   * as if its root were `/`, and `..` stops at that root, as docker's loader resolves paths; hard
   * links lead to their target. Undefined when there is no such file.
   */
  file(name: string): TarEntry | undefined {
    let parts = lexical(name.split('/'));
    let hops = 0;
    resolving: for (;;) {
      for (let i = 1; i <= parts.length; i++) {
        const e = this.entries.get(parts.slice(0, i).join('/'));
        if (e?.kind === 'symlink' && e.linkname !== undefined) {
          if (++hops > MAX_LINKS) return undefined;
          const base = e.linkname.startsWith('/') ? [] : parts.slice(0, i - 1);
          parts = lexical([...base, ...e.linkname.split('/'), ...parts.slice(i)]);
          continue resolving;
        }
        if (i < parts.length) continue;
        if (e?.kind === 'link' && e.linkname !== undefined) {
          if (++hops > MAX_LINKS) return undefined;
          parts = lexical(e.linkname.split('/'));
          continue resolving;
        }
        return e?.kind === 'file' ? e : undefined;
      }
      return undefined;
    }
  }

  /** A fresh stream of a regular file's body, failing if it differs from what was indexed. */
  open(entry: TarEntry): Readable {
    if (entry.kind !== 'file' || !entry.digest) throw new Error(`TarArchive.open: ${entry.name} is not a regular file`);
    const verify = new VerifyingStream(entry.digest, entry.size, `${this.where} (entry ${printable(entry.name)})`);
    const body =
      entry.size === 0 ? Readable.from([]) : createReadStream(this.path, { start: entry.offset, end: entry.offset + entry.size - 1, highWaterMark: 1 << 20 });
    return pipeline(body, verify, () => undefined) as unknown as Readable;
  }

  /** A whole (small) entry, verified. */
  read(entry: TarEntry): Promise<Buffer> {
    return readAll(this.open(entry));
  }

  /** The first bytes of an entry (to tell compressions apart). */
  async head(entry: TarEntry, n: number): Promise<Buffer> {
    if (entry.size === 0) return Buffer.alloc(0);
    return readHead(this.path, Math.min(n, entry.size), entry.offset);
  }
}

function kindOf(type: string | null | undefined): EntryKind {
  switch (type) {
    case 'file':
    case 'contiguous-file':
      return 'file';
    case 'directory':
      return 'directory';
    case 'symlink':
      return 'symlink';
    case 'link':
      return 'link';
    default:
      return 'other';
  }
}

/** `./a//b/` → `a/b`; undefined for names with `..` components (or the root itself). */
export function normalizeName(name: string): string | undefined {
  const parts: string[] = [];
  for (const p of name.split('/')) {
    if (p === '' || p === '.') continue;
    if (p === '..') return undefined;
    parts.push(p);
  }
  return parts.length ? parts.join('/') : undefined;
}

/** Lexical resolution with `..` stopping at the root. */
function lexical(parts: string[]): string[] {
  const out: string[] = [];
  for (const p of parts) {
    if (p === '' || p === '.') continue;
    if (p === '..') out.pop();
    else out.push(p);
  }
  return out;
}

function indexError(err: unknown, where: string, indexed: number, current: string | undefined, inBody: boolean): unknown {
  const message = err instanceof Error ? err.message : String(err);
  if (/Invalid tar header|Unexpected end of data|Header exceeds max size|Invalid header/.test(message)) {
    if (indexed === 0 && current === undefined) {
      return new ArchiveFormatError(where, 'not a tar archive (nor a gzip, zstd, xz or bzip2 compressed one)', { cause: err });
    }
    if (/Unexpected end of data/.test(message)) {
      const at = current === undefined ? '' : inBody ? ` inside entry "${printable(current)}"` : ` after entry "${printable(current)}"`;
      return new ArchiveFormatError(where, `the archive is truncated: it ends${at}`, { cause: err });
    }
    return new ArchiveFormatError(where, `corrupt tar header${current === undefined ? '' : ` after entry "${printable(current)}"`}`, { cause: err });
  }
  return err;
}

// ---------------------------------------------------------------------------------------------

export type ArchiveSource =
  | { kind: 'dir'; path: string; where: string; close(): Promise<void> }
  | { kind: 'tar'; archive: TarArchive; where: string; compression: StreamCompression; close(): Promise<void> };

/**
 * Opens a path (directory, tar, compressed tar) or a stream as something readable by name. A plain
 * tar file is indexed where it is; anything else is decompressed into a temp file under `tmpDir`
 * first, removed by `close()`.
 */
export async function openArchiveSource(input: string | Readable, opts: { tmpDir?: string; name?: string } = {}): Promise<ArchiveSource> {
  const noop = async () => undefined;
  if (typeof input === 'string') {
    const where = opts.name ?? input;
    let st;
    try {
      st = await fsp.stat(input);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      throw new InputFileError(input, code === 'ENOENT' ? 'no such file or directory' : `cannot be read: ${(err as Error).message}`, { cause: err });
    }
    if (st.isDirectory()) return { kind: 'dir', path: input, where, close: noop };
    const compression = sniffCompression(await readHead(input, SNIFF_BYTES));
    if (compression === 'none') return { kind: 'tar', archive: await TarArchive.index(input, where), where, compression, close: noop };
    return spoolAndIndex(createReadStream(input), compression, where, opts.tmpDir);
  }
  const where = opts.name ?? '<stream>';
  const { head, stream } = await peekStream(input, SNIFF_BYTES);
  return spoolAndIndex(stream, sniffCompression(head), where, opts.tmpDir);
}

async function spoolAndIndex(input: Readable, compression: StreamCompression, where: string, tmpDir: string | undefined): Promise<ArchiveSource> {
  const dir = await fsp.mkdtemp(join(tmpDir ?? tmpdir(), 'kiln-archive-'));
  const close = () => fsp.rm(dir, { recursive: true, force: true });
  try {
    const spool = join(dir, 'archive.tar');
    try {
      await pipelineAsync(decompressAs(input, compression), createWriteStream(spool, { flags: 'wx', mode: 0o600 }));
    } catch (err) {
      if (err instanceof CompressionError) throw new ArchiveFormatError(where, err.message, { cause: err, hint: err.hint });
      throw err;
    }
    return { kind: 'tar', archive: await TarArchive.index(spool, where), where, compression, close };
  } catch (err) {
    await close();
    throw err;
  }
}
