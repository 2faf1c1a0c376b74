/**
 * The tar of a COPY/ADD layer, byte for byte what `writeTarEntries` writes for the same entries
 * (the same order, headers, PAX records, hardlinks and padding: the layer digest must not depend
 * on which writer made it), produced for throughput: each entry is examined once, synchronously,
 * and headers and file contents are written straight into large output chunks. A copy of a big
 * context is 20,000 small entries, where the general writer's per-entry streams, promises and
 * small chunks cost more than reading the files.
 *
 * The entries come from the same rules as the general writer's (oci/layer/entries.ts), and their
 * headers are encoded by the same tar-stream header coder its pack drives (oci/layer/tar.ts).
 */
import { createHash, type Hash } from 'node:crypto';
import { closeSync, readSync } from 'node:fs';
import { fileShrankError, listSpec, openSourceFile, sortListed, specPackItems, type TarEntrySpec, type TarWriteOptions } from '../../oci/layer/entries.js';
import { END_OF_ARCHIVE_BYTES, blockPadding, encodeHeaderBlocks, toPackHeader } from '../../oci/layer/tar.js';

/** Bytes of output gathered before they are handed on. */
const CHUNK = 1024 * 1024;

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

  /**
   * Reads the open file `fd` from `pos` (of `size` bytes) straight into the output, at most to the end
   * of the current chunk (and into `hash`, when given); answers how many bytes it read.
   */
  readFileSome(fd: number, pos: number, size: number, path: string, hash?: Hash): number {
    const want = Math.min(size - pos, CHUNK - this.used);
    const n = readSync(fd, this.buf, this.used, want, pos);
    if (n === 0) throw fileShrankError(path, size);
    hash?.update(this.buf.subarray(this.used, this.used + n));
    this.used += n;
    if (this.used === CHUNK) this.rotate();
    return n;
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

export interface CopyTarOptions extends TarWriteOptions {
  /**
   * Called once the tar is written with its content digest: what the entries are (paths, types,
   * modes, owners, link targets, xattrs, contents) without their times. Two copies of the same files
   * made at different times have the same one, as BuildKit's content checksums do.
   */
  onContentDigest?: (digest: string) => void;
}

/**
 * The layer tar of `entries`, as `writeTarEntries(entries, options)` writes it, in chunks of about
 * a megabyte. Sources are read while the chunks are produced.
 */
export async function* copyLayerTar(entries: Iterable<TarEntrySpec>, options: CopyTarOptions = {}): AsyncGenerator<Buffer> {
  const list = sortListed(Array.from(entries, listSpec));
  const out = new ChunkWriter();
  const content = options.onContentDigest ? createHash('sha256') : undefined;
  for (const item of specPackItems(list, options)) {
    for (const b of encodeHeaderBlocks(toPackHeader(item.header))) out.write(b);
    if (content) {
      const { mtime: _time, xattrs, ...rest } = item.header;
      const record = JSON.stringify({ ...rest, xattrs: xattrs?.map(([k, v]) => [k, Buffer.from(v).toString('base64')]) });
      content.update(`${Buffer.byteLength(record)}:${record}`);
    }
    if (item.source) {
      const { path, size } = item.source;
      // Opened even when empty, as the general writer does (an unreadable file fails either way).
      const fd = openSourceFile(path);
      try {
        // A chunk at a time, handed on as it fills: a big file is never held whole.
        for (let pos = 0; pos < size; ) {
          pos += out.readFileSome(fd, pos, size, path, content);
          while (out.full.length > 0) yield out.full.shift()!;
        }
      } finally {
        closeSync(fd);
      }
      out.zeros(blockPadding(size));
    } else if (item.data?.byteLength) {
      out.write(item.data);
      content?.update(item.data);
      out.zeros(blockPadding(item.data.byteLength));
    }
    while (out.full.length > 0) yield out.full.shift()!;
  }
  out.zeros(END_OF_ARCHIVE_BYTES);
  while (out.full.length > 0) yield out.full.shift()!;
  const rest = out.rest();
  if (rest) yield rest;
  if (content) options.onContentDigest!(`sha256:${content.digest('hex')}`);
}
