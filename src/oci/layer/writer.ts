/**
 * Layer tar writing: a directory tree (a full rootfs, or an overlay upper dir translated to OCI
 * whiteouts) or an explicit list of entries, streamed from disk into a deterministic tar.
 *
 * Determinism: entries are ordered by the bytes of their tar names (directories carry a trailing `/`,
 * so a directory's subtree follows it contiguously and the walk needs only one directory listing in
 * memory at a time); owners are numeric with empty user/group names; times are whole seconds, clamped
 * to SOURCE_DATE_EPOCH when given; xattrs are sorted; nothing depends on readdir order, inode numbers
 * or the clock. What each entry's header holds is decided in entries.ts, shared with the COPY writer.
 */
import { closeSync, constants as fsc, lstatSync, readSync, readdirSync, type Stats } from 'node:fs';
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { EntryBuilder, fileShrankError, listSpec, lstatOrThrow, openSourceFile, sortListed, specPackItems, strictUtf8, type ListedSpec, type PackItem, type TarEntrySpec, type TarWriteOptions } from './entries.js';
import { LayerSourceError } from './errors.js';
import { WHITEOUT_OPAQUE, WHITEOUT_PREFIX } from './paths.js';
import { createPack, toPackHeader, type Pack } from './tar.js';
import { messageOf } from './util.js';

export type { LayerWarning, TarEntrySpec, TarWriteOptions, XattrPolicy } from './entries.js';

export type LayerSourceMode = 'rootfs' | 'overlay-diff';

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

/**
 * Tars an explicit list of entries. The list is sorted into tar-name order (its specs and their
 * sources' lstat are held in memory; file contents are not), duplicates are refused, and
 * hardlinked sources whose metadata agree are written as hardlinks. Parent directories are not
 * invented: list them when wanted.
 */
export function writeTarEntries(
  entries: Iterable<TarEntrySpec> | AsyncIterable<TarEntrySpec>,
  options: TarWriteOptions = {},
): Readable {
  return packItems(specItems(entries, options), options.signal);
}

// ---------------------------------------------------------------------------------------------

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
    const st = lstatOrThrow(path);
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
  const list: ListedSpec[] = [];
  for await (const spec of entries) list.push(listSpec(spec));
  yield* specPackItems(sortListed(list), options);
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
      if (bytesRead === 0) throw fileShrankError(path, size);
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
  const fd = openSourceFile(path);
  try {
    const buf = Buffer.allocUnsafe(size);
    let off = 0;
    while (off < size) {
      const n = readSync(fd, buf, off, size - off, off);
      if (n === 0) throw fileShrankError(path, size);
      off += n;
    }
    return buf;
  } finally {
    closeSync(fd);
  }
}
