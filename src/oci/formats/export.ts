/**
 * An image's root filesystem: its layers applied in order, whiteouts and opaque directories
 * honoured, as a directory or as one flat tar (`--output type=local` / `type=tar`).
 */
import { once } from 'node:events';
import { promises as fsp } from 'node:fs';
import type { Readable, Writable } from 'node:stream';
import type { Image } from '../image.js';
import { LayerFormatError, UnsafeLayerEntryError, extractLayer, isOverlayXattr, type ExtractOptions } from '../layer/index.js';
import { WHITEOUT_META_PREFIX, WHITEOUT_OPAQUE, WHITEOUT_PREFIX, entryComponents } from '../layer/paths.js';
import { createExtract, createPack, headerXattrs, paxString, toPackHeader, type EntryHeader, type EntryType, type Header, type Pack } from '../layer/tar.js';
import { pump } from './tarwriter.js';

export interface ExportRootfsOptions {
  /**
   * Directory export: `keep` sets the owners the layers record (needs root or a full id map),
   * `ignore` leaves files owned by the caller. Default: `keep` when running as root, else `ignore`.
   * A tar export always records the layers' owners.
   */
  ownership?: 'keep' | 'ignore';
  /** Directory export: things skipped rather than failed on (device nodes an unprivileged user cannot make). */
  onWarning?: ExtractOptions['onWarning'];
  signal?: AbortSignal;
}

export type RootfsDestination = { dir: string } | { tar: Writable; /** End the stream when done (default true). */ end?: boolean };

export async function exportRootfs(image: Image, dest: RootfsDestination, options: ExportRootfsOptions = {}): Promise<void> {
  const layers = await image.layers();
  if ('dir' in dest) {
    await fsp.mkdir(dest.dir, { recursive: true });
    const ownership = options.ownership ?? (process.geteuid?.() === 0 ? 'keep' : 'ignore');
    for (const layer of layers) {
      options.signal?.throwIfAborted();
      await extractLayer(await layer.uncompressed(), dest.dir, {
        whiteouts: 'apply',
        ownership,
        ...(options.onWarning ? { onWarning: options.onWarning } : {}),
        ...(options.signal ? { signal: options.signal } : {}),
      });
    }
    return;
  }
  const pack = createPack();
  const done = pump(pack as unknown as Readable, dest.tar, dest.end ?? true);
  done.catch(() => undefined); // reported through the awaits below
  try {
    const flattener = new Flattener(pack, done);
    for (let i = layers.length - 1; i >= 0; i--) {
      options.signal?.throwIfAborted();
      const layer = layers[i]!;
      await flattener.layer(i, () => layer.uncompressed());
    }
    await flattener.finish();
    pack.finalize();
    await done;
  } catch (err) {
    pack.destroy(err as Error);
    throw err;
  }
}

// ---------------------------------------------------------------------------------------------

interface Emitted {
  kind: 'dir' | 'file' | 'other';
  /** Layer that emitted it. */
  layer: number;
}

/** A regular file (or hardlink) of the layer being read. */
interface LayerInode {
  /** The first path of the inode in this layer (what its other links name). */
  root: string;
  /** Where the inode's content went in the output, once it has. */
  emittedAt?: string;
}

/**
 * Flattens layers into one tar in a single pass per layer, top layer first: an entry is written
 * unless a layer above it already wrote that path, deleted it (whiteout), hid it (opaque parent) or
 * replaced one of its parents with a non-directory. Reading top-down means the layers never have to
 * be unpacked or read twice; the output lists upper entries before lower ones, which tar extractors
 * accept (missing parents are created, a later directory entry sets the directory's metadata).
 *
 * Hard links are the one thing top-down order makes awkward. A link whose target (in its own layer)
 * is hidden by an upper layer still needs that layer's content: the layer is read a second time for
 * just those targets, the first such link becomes a regular file with the content and the others
 * link to it. A link to a file of a lower layer (unusual: layer tools write links within a layer) is
 * written at the end, to that path's final content.
 */
class Flattener {
  private readonly final = new Map<string, Emitted>();
  private readonly deleted = new Set<string>();
  private readonly opaque = new Set<string>();
  private readonly crossLayer: Array<{ header: EntryHeader; target: string }> = [];

  constructor(
    private readonly pack: Pack,
    private readonly done: Promise<void>,
  ) {}

  async layer(i: number, open: () => Promise<Readable>): Promise<void> {
    const stagedDeleted: string[] = [];
    const stagedOpaque: string[] = [];
    const inodes = new Map<string, LayerInode>();
    /** Shadowed inode roots → the visible links that need their content, in order. */
    const needs = new Map<string, EntryHeader[]>();

    await this.each(await open(), async (header, body) => {
      const parts = entryComponents(header.name);
      if (parts.length === 0) return; // the root directory: not part of a rootfs tar's contents
      const base = parts[parts.length - 1]!;
      const dir = parts.slice(0, -1).join('/');
      if (base.startsWith(WHITEOUT_PREFIX)) {
        if (base === WHITEOUT_OPAQUE) stagedOpaque.push(dir);
        else if (!base.startsWith(WHITEOUT_META_PREFIX)) {
          const target = base.slice(WHITEOUT_PREFIX.length);
          if (target === '' || target === '.' || target === '..') throw new UnsafeLayerEntryError(header.name, `whiteout of "${target}"`);
          stagedDeleted.push(dir ? `${dir}/${target}` : target);
        }
        return;
      }
      const path = parts.join('/');
      const out = outHeader(header, path);
      const visible = this.visible(path, i);
      if (out.type === 'link') {
        const target = entryComponentsOf(header.name, header.linkname ?? '').join('/');
        const inode = inodes.get(target);
        const root = inode?.root ?? target;
        inodes.set(path, { root });
        if (!visible) return;
        this.final.set(path, { kind: 'file', layer: i });
        if (!inode) {
          this.crossLayer.push({ header: out, target });
          return;
        }
        const at = inodes.get(root)?.emittedAt;
        if (at !== undefined) await this.write({ ...out, linkname: at });
        else needs.set(root, [...(needs.get(root) ?? []), out]);
        return;
      }
      // Files and symlinks can be hard-link targets (GNU tar links symlinks too).
      if (out.type === 'file' || out.type === 'symlink') inodes.set(path, visible ? { root: path, emittedAt: path } : { root: path });
      if (!visible) return;
      this.final.set(path, { kind: out.type === 'directory' ? 'dir' : out.type === 'file' ? 'file' : 'other', layer: i });
      await this.write(out, out.type === 'file' ? body : undefined);
    });

    if (needs.size > 0) {
      // Second pass: the content of shadowed link targets, for the links that are still visible.
      await this.each(await open(), async (header, body) => {
        const path = entryComponents(header.name).join('/');
        const links = needs.get(path);
        const content = links ? outHeader(header, path) : undefined;
        if (!links || !content || (content.type !== 'file' && content.type !== 'symlink')) return;
        needs.delete(path);
        const [first, ...rest] = links;
        await this.write({ ...content, name: first!.name }, body);
        for (const link of rest) await this.write({ ...link, linkname: first!.name });
      });
      for (const [root, links] of needs) {
        throw new LayerFormatError(`hardlink target "${root}" does not exist`, links[0]!.name);
      }
    }
    for (const p of stagedDeleted) this.deleted.add(p);
    for (const p of stagedOpaque) this.opaque.add(p);
  }

  async finish(): Promise<void> {
    for (const { header, target } of this.crossLayer) {
      const kind = this.final.get(target)?.kind;
      if (kind === undefined || kind === 'dir') throw new LayerFormatError(`hardlink target "${target}" does not exist`, header.name);
      await this.write({ ...header, linkname: target });
    }
  }

  /** Whether layer `i`'s entry at `path` survives the layers above it. */
  private visible(path: string, i: number): boolean {
    const parts = path.split('/');
    for (let k = 1; k <= parts.length; k++) {
      const p = k === parts.length ? path : parts.slice(0, k).join('/');
      if (this.deleted.has(p)) return false;
      const f = this.final.get(p);
      if (k < parts.length) {
        if (this.opaque.has(p)) return false;
        if (f && f.layer > i && f.kind !== 'dir') return false;
      } else if (f && f.layer > i) {
        return false;
      }
    }
    return true;
  }

  private async each(tar: Readable, fn: (header: Header, body: AsyncIterable<unknown>) => Promise<void>): Promise<void> {
    const ex = createExtract();
    tar.on('error', (err) => ex.destroy(err));
    tar.pipe(ex as unknown as NodeJS.WritableStream);
    try {
      for await (const entry of ex) {
        await fn(entry.header as Header, entry);
        for await (const _ of entry) void _;
      }
    } catch (err) {
      tar.destroy();
      ex.destroy();
      if (err instanceof Error && !(err as { code?: unknown }).code && /tar|header|Unexpected end of data/i.test(err.message)) {
        throw new LayerFormatError(err.message, undefined, { cause: err });
      }
      throw err;
    }
  }

  private async write(h: EntryHeader, body?: AsyncIterable<unknown>): Promise<void> {
    let settle!: (err?: Error | null) => void;
    const finished = new Promise<void>((resolve, reject) => {
      settle = (err) => (err ? reject(err) : resolve());
    });
    const sink = this.pack.entry(toPackHeader({ ...h, name: h.type === 'directory' ? `${h.name}/` : h.name }), settle);
    if (h.type === 'file' && h.size > 0 && body) {
      for await (const chunk of body) {
        if (!sink.write(chunk as Buffer)) await Promise.race([once(sink as unknown as NodeJS.EventEmitter, 'drain'), this.done]);
      }
    }
    (sink as unknown as { end(): void }).end();
    await Promise.race([finished, this.done.then(() => finished)]);
  }
}

function entryComponentsOf(entry: string, linkname: string): string[] {
  try {
    return entryComponents(linkname);
  } catch (err) {
    if (err instanceof UnsafeLayerEntryError) throw new UnsafeLayerEntryError(entry, `hardlink target "${linkname}": ${err.reason}`);
    throw err;
  }
}

function numericPax(header: Header, key: string): number | undefined {
  const value = paxString(header, key);
  if (value === undefined) return undefined;
  const n = Number(value);
  return Number.isFinite(n) ? n : undefined;
}

/** The writer's description of an entry read from a layer (numeric owners, whole-second times). */
function outHeader(header: Header, path: string): EntryHeader {
  if (paxString(header, 'GNU.sparse.major') !== undefined || paxString(header, 'GNU.sparse.map') !== undefined) {
    throw new LayerFormatError('sparse files are not supported', header.name);
  }
  const type = (header.type === 'contiguous-file' ? 'file' : header.type) as string | null | undefined;
  const types: EntryType[] = ['file', 'link', 'symlink', 'directory', 'character-device', 'block-device', 'fifo'];
  if (!type || !types.includes(type as EntryType)) throw new LayerFormatError(`unsupported entry type ${type ?? '(unknown typeflag)'}`, header.name);
  const h: EntryHeader = {
    name: path,
    type: type as EntryType,
    mode: (header.mode ?? 0) & 0o7777,
    uid: numericPax(header, 'uid') ?? header.uid ?? 0,
    gid: numericPax(header, 'gid') ?? header.gid ?? 0,
    size: type === 'file' ? header.size ?? 0 : 0,
    mtime: Math.floor(numericPax(header, 'mtime') ?? (header.mtime ? header.mtime.getTime() / 1000 : 0)),
  };
  if ((type === 'symlink' || type === 'link') && header.linkname) h.linkname = header.linkname;
  if (type === 'character-device' || type === 'block-device') {
    h.devmajor = header.devmajor ?? 0;
    h.devminor = header.devminor ?? 0;
  }
  const xattrs = headerXattrs(header).filter(([name]) => !isOverlayXattr(name));
  if (xattrs.length) h.xattrs = xattrs;
  return h;
}
