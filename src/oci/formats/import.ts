/**
 * `docker import`: a root filesystem (a tar, plain or compressed, or a directory) becomes a one-layer
 * image. The layer is the tar exactly as given (uncompressed), as docker keeps it; every entry is
 * checked with the layer module's rules first, so a tar that would write outside the root when
 * unpacked is refused here rather than when it is run.
 */
import { createReadStream, createWriteStream, promises as fsp } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pipeline, type Readable } from 'node:stream';
import { finished, pipeline as pipelineAsync } from 'node:stream/promises';
import { DigestingStream, sha256, type Digest } from '../digest.js';
import type { Image, Layer } from '../image.js';
import { CompressionError, LayerFormatError, UnsafeLayerEntryError, peekStream, writeLayerTar } from '../layer/index.js';
import { entryComponents } from '../layer/paths.js';
import { createExtract, paxString } from '../layer/tar.js';
import { VerifyingStream } from '../layout/index.js';
import { MediaType } from '../mediatypes.js';
import { hostPlatform } from '../platform.js';
import type { ContainerConfig, ImageConfig, Manifest, Platform } from '../types.js';
import { StaticImage } from './archive-image.js';
import { SNIFF_BYTES, decompressAs, readHead, sniffCompression, type StreamCompression } from './compression.js';
import { RootfsSourceError, printable } from './errors.js';

export interface ImportOptions {
  /** The image's platform (default: this host's). */
  platform?: Platform;
  /** Creation time recorded in the config and history (default: now). */
  created?: Date;
  /** The history comment (`docker import --message`); default `Imported from <source>`. */
  history?: string;
  /** Container settings for the config (what `--change` produces). */
  config?: ContainerConfig;
  author?: string;
  /** Where a stream is spooled while it is imported. Default: the OS temp dir. */
  tmpDir?: string;
  /** How messages name the source (default: the path, or `-` for a stream). */
  name?: string;
}

/** An imported image; `close()` removes the spooled copy of a streamed rootfs (nothing otherwise). */
export interface ImportedImage extends Image {
  close(): Promise<void>;
}

/** Where the layer's uncompressed tar comes from, opened afresh on every read. */
interface TarSource {
  open(): Readable;
  close(): Promise<void>;
}

export async function importRootfs(source: string | Readable, options: ImportOptions = {}): Promise<ImportedImage> {
  const where = options.name ?? (typeof source === 'string' ? source : '-');
  const tarSource = await openRootfs(source, where, options.tmpDir);
  try {
    const { diffID, size } = await scan(tarSource.open(), where);
    const layer = new ImportedLayer(diffID, size, tarSource, where);
    const platform = options.platform ?? hostPlatform();
    const created = (options.created ?? new Date()).toISOString();
    const comment = options.history ?? `Imported from ${where}`;
    const config: ImageConfig & { comment?: string } = {
      architecture: platform.architecture,
      os: platform.os,
      ...(platform.variant ? { variant: platform.variant } : {}),
      ...(platform['os.version'] ? { 'os.version': platform['os.version'] } : {}),
      created,
      ...(options.author ? { author: options.author } : {}),
      comment,
      config: options.config ?? {},
      rootfs: { type: 'layers', diff_ids: [diffID] },
      history: [{ created, comment, ...(options.author ? { author: options.author } : {}) }],
    };
    const rawConfig = Buffer.from(JSON.stringify(config));
    const manifest: Manifest = {
      schemaVersion: 2,
      mediaType: MediaType.ociManifest,
      config: { mediaType: MediaType.ociConfig, digest: sha256(rawConfig), size: rawConfig.length },
      layers: [{ mediaType: MediaType.ociLayer, digest: diffID, size }],
    };
    const image = new StaticImage({ manifest: Buffer.from(JSON.stringify(manifest)), config: rawConfig }, { manifest, config }, [layer], MediaType.ociManifest);
    return Object.assign(image, { close: () => tarSource.close() });
  } catch (err) {
    await tarSource.close();
    throw err;
  }
}

async function openRootfs(source: string | Readable, where: string, tmpDir: string | undefined): Promise<TarSource> {
  const noClose = async () => undefined;
  if (typeof source !== 'string') {
    // A stream can be read only once, and the layer must be readable again: keep a decompressed copy.
    const { head, stream } = await peekStream(source, SNIFF_BYTES);
    const dir = await fsp.mkdtemp(join(tmpDir ?? tmpdir(), 'kiln-import-'));
    const spool = join(dir, 'rootfs.tar');
    try {
      await pipelineAsync(decompressAs(stream, sniffCompression(head)), createWriteStream(spool, { flags: 'wx', mode: 0o600 }));
    } catch (err) {
      await fsp.rm(dir, { recursive: true, force: true });
      throw sourceError(err, where);
    }
    return { open: () => createReadStream(spool), close: () => fsp.rm(dir, { recursive: true, force: true }) };
  }
  let st;
  try {
    st = await fsp.stat(source);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new RootfsSourceError(where, code === 'ENOENT' ? 'no such file or directory' : `cannot be read: ${(err as Error).message}`, { cause: err });
  }
  if (st.isDirectory()) {
    // writeLayerTar is deterministic, so the tree is tarred again on every read instead of being
    // copied; a tree changed since the import fails that read's digest check.
    return { open: () => writeLayerTar(source), close: noClose };
  }
  if (!st.isFile()) throw new RootfsSourceError(where, 'neither a tar file nor a directory');
  const compression: StreamCompression = sniffCompression(await readHead(source, SNIFF_BYTES));
  return { open: () => decompressAs(createReadStream(source), compression), close: noClose };
}

/** Reads the tar once: its diffID and size, and every entry checked as the extractor would. */
async function scan(tar: Readable, where: string): Promise<{ diffID: Digest; size: number }> {
  const digesting = new DigestingStream();
  const ex = createExtract();
  const input = pipeline(tar, digesting, () => undefined);
  input.on('error', (err) => ex.destroy(err));
  input.pipe(ex as unknown as NodeJS.WritableStream);
  const symlinks = new Set<string>();
  let entries = 0;
  try {
    for await (const entry of ex) {
      entries++;
      checkEntry(entry.header, symlinks);
      for await (const _ of entry) void _;
    }
  } catch (err) {
    input.destroy();
    throw sourceError(err, where, entries);
  }
  // The extractor reads its input to the very end (padding after the end-of-archive blocks
  // included), so the digest below covers every byte of the layer.
  await finished(input);
  if (entries === 0 && digesting.size === 0) throw new RootfsSourceError(where, 'the file is empty, not a tar archive');
  return { diffID: digesting.digest, size: digesting.size };
}

function checkEntry(header: { name: string; type?: string | null; linkname?: string | null }, symlinks: Set<string>): void {
  const parts = entryComponents(header.name); // refuses `..`, absolute names and NUL bytes
  if (paxString(header as never, 'GNU.sparse.major') !== undefined || paxString(header as never, 'GNU.sparse.map') !== undefined) {
    throw new LayerFormatError('sparse files are not supported', header.name);
  }
  // An entry below a symlink this tar made would be written wherever the link points.
  for (let i = 1; i < parts.length; i++) {
    const parent = parts.slice(0, i).join('/');
    if (symlinks.has(parent)) throw new UnsafeLayerEntryError(header.name, `its parent "${parent}" is a symlink made by this tar`);
  }
  const path = parts.join('/');
  switch (header.type) {
    case 'symlink':
      symlinks.add(path);
      return;
    case 'link':
      try {
        entryComponents(header.linkname ?? '');
      } catch (err) {
        if (err instanceof UnsafeLayerEntryError) throw new UnsafeLayerEntryError(header.name, `hardlink target "${header.linkname}": ${err.reason}`);
        throw err;
      }
      symlinks.delete(path);
      return;
    case 'file':
    case 'contiguous-file':
    case 'directory':
    case 'character-device':
    case 'block-device':
    case 'fifo':
      symlinks.delete(path);
      return;
    default:
      throw new LayerFormatError(`unsupported entry type ${header.type ?? '(unknown typeflag)'}`, header.name);
  }
}

function sourceError(err: unknown, where: string, entries = 0): unknown {
  if (err instanceof UnsafeLayerEntryError || err instanceof LayerFormatError || err instanceof RootfsSourceError) return err;
  if (err instanceof CompressionError) return new RootfsSourceError(where, err.message, { cause: err, hint: err.hint });
  const message = err instanceof Error ? err.message : String(err);
  if (/Invalid tar header|Unexpected end of data|Invalid header/.test(message)) {
    if (entries === 0) return new RootfsSourceError(where, 'not a tar archive (nor a gzip, zstd, xz or bzip2 compressed one)', { cause: err });
    return new RootfsSourceError(where, /Unexpected end/.test(message) ? 'the tar archive is truncated' : 'corrupt tar header', { cause: err });
  }
  return err;
}

class ImportedLayer implements Layer {
  constructor(
    private readonly diff: Digest,
    private readonly bytes: number,
    private readonly source: TarSource,
    private readonly where: string,
  ) {}
  async digest(): Promise<Digest> {
    return this.diff;
  }
  async diffID(): Promise<Digest> {
    return this.diff;
  }
  async size(): Promise<number> {
    return this.bytes;
  }
  async mediaType(): Promise<string> {
    return MediaType.ociLayer;
  }
  async compressed(): Promise<Readable> {
    return this.uncompressed();
  }
  async uncompressed(): Promise<Readable> {
    const verify = new VerifyingStream(this.diff, this.bytes, `the rootfs imported from ${printable(this.where)} (changed since the import?)`);
    return pipeline(this.source.open(), verify, () => undefined) as unknown as Readable;
  }
}
