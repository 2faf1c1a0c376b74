/**
 * Image ownership in the single-uid namespace (no newuidmap, or no subordinate range).
 *
 * There only uid/gid 0 exist, so files cannot be given an image's owners: lchown to 1000 fails with
 * EINVAL. kiln then keeps the owners beside the files instead:
 *
 * - unpacking a layer into a snapshot (`squashedLayerCodec`, given to `openStore` as its layer codec)
 *   leaves every file owned by root and writes `<snapshot>/kiln-owners.json`, the tar's owner of each
 *   entry that is not 0:0, keyed by its path in the layer;
 * - committing a RUN step (`restoreOwnersTransform`) rewrites the new layer's tar: an entry owned by
 *   0:0 whose path exists in a lower layer gets the owner that layer's sidecar records, since on disk
 *   it is a copy-up (or, with the copy snapshotter, a copy) of that file. Entries the step created
 *   stay root's, which is all the step could have made.
 *
 * The exported layers therefore carry the image's real owners. What cannot work in this mode is a
 * step that chowns to, or runs as, another uid; runStep refuses USER for that reason.
 */
import { readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { extractLayer } from '../oci/layer/index.js';
import { createExtract, createPack, headerXattrs, toPackHeader, type EntryHeader, type Header } from '../oci/layer/tar.js';
import { defaultLayerCodec, type LayerCodec } from '../store/layer-codec.js';
import type { LayerStack } from './layers.js';

/** The sidecar file, next to a snapshot's `fs` directory. */
export const OWNERS_SIDECAR = 'kiln-owners.json';

interface Sidecar {
  version: 1;
  /** Path in the layer (no leading `./`, no trailing `/`) → [uid, gid]. */
  owners: Record<string, [number, number]>;
}

function entryPath(name: string): string {
  return name.replace(/^(\.\/)+/, '').replace(/\/+$/, '');
}

/**
 * A LayerCodec for the single-uid namespace: unpacks without chown and records the owners; compresses
 * as the default codec does.
 */
export function squashedLayerCodec(): LayerCodec {
  return {
    extract: async (tar: Readable, dir: string) => {
      const owners: Sidecar['owners'] = {};
      const copy = new PassThrough();
      const record = new PassThrough();
      tar.on('error', (err) => {
        copy.destroy(err);
        record.destroy(err);
      });
      tar.on('data', (chunk: Buffer) => {
        const slow = [copy, record].filter((s) => !s.write(chunk));
        if (slow.length === 0) return;
        // Both readers get every byte; the faster waits for the slower.
        tar.pause();
        let waiting = slow.length;
        for (const s of slow) s.once('drain', () => --waiting === 0 && tar.resume());
      });
      tar.on('end', () => {
        copy.end();
        record.end();
      });
      const reading = readOwners(record, owners);
      await Promise.all([extractLayer(copy, dir, { whiteouts: 'overlay', ownership: 'ignore' }), reading]);
      const sidecar: Sidecar = { version: 1, owners };
      await writeFile(join(dirname(dir), OWNERS_SIDECAR), JSON.stringify(sidecar));
    },
    compress: async (tar, compression) => (await defaultLayerCodec()).compress(tar, compression),
  };
}

async function readOwners(tar: Readable, owners: Sidecar['owners']): Promise<void> {
  const ex = createExtract();
  tar.pipe(ex as unknown as NodeJS.WritableStream);
  for await (const entry of ex) {
    const h = entry.header;
    const uid = Number(paxValue(h, 'uid') ?? h.uid ?? 0);
    const gid = Number(paxValue(h, 'gid') ?? h.gid ?? 0);
    if (uid !== 0 || gid !== 0) owners[entryPath(h.name)] = [uid, gid];
    entry.resume();
  }
}

function paxValue(h: Header, key: string): string | undefined {
  const pax = h.pax as Record<string, string> | null | undefined;
  return pax?.[key];
}

/** Sidecars by snapshot directory, read once per process. */
const sidecars = new Map<string, Sidecar['owners']>();

function ownersOf(layerFs: string): Sidecar['owners'] {
  let owners = sidecars.get(layerFs);
  if (!owners) {
    try {
      owners = (JSON.parse(readFileSync(join(dirname(layerFs), OWNERS_SIDECAR), 'utf8')) as Sidecar).owners ?? {};
    } catch {
      owners = {};
    }
    sidecars.set(layerFs, owners);
  }
  return owners;
}

/** The owner the lower layers record for a path, if it exists there with one. */
export function lowerOwner(lowers: LayerStack, path: string): [number, number] | undefined {
  const components = path.split('/').filter(Boolean);
  if (components.length === 0) return undefined;
  const found = lowers.lookup(components);
  if (!found) return undefined;
  return ownersOf(lowers.layers[found.layer]!)[components.join('/')];
}

/** Rewrites a layer tar so copied-up entries get their owners from the lower layers' sidecars. */
export function restoreOwnersTransform(tar: Readable, lowers: LayerStack): Readable {
  const ex = createExtract();
  const pack = createPack();
  const fail = (err: Error) => {
    ex.destroy(err);
    pack.destroy(err);
  };
  tar.on('error', fail);
  ex.on('error', fail);
  ex.on('entry', (header, stream, next) => {
    let uid = Number(paxValue(header, 'uid') ?? header.uid ?? 0);
    let gid = Number(paxValue(header, 'gid') ?? header.gid ?? 0);
    const name = entryPath(header.name);
    const base = name.slice(name.lastIndexOf('/') + 1);
    if (uid === 0 && gid === 0 && !base.startsWith('.wh.')) {
      const owner = lowerOwner(lowers, name);
      if (owner) [uid, gid] = owner;
    } else if (base === '.wh..wh..opq') {
      const owner = lowerOwner(lowers, name.slice(0, name.length - base.length));
      if (owner) [uid, gid] = owner;
    }
    const entry: EntryHeader = {
      name: header.name,
      type: header.type as EntryHeader['type'],
      mode: (header.mode ?? 0) & 0o7777,
      uid,
      gid,
      size: header.size ?? 0,
      mtime: Math.floor((header.mtime?.getTime() ?? 0) / 1000),
      ...(header.linkname ? { linkname: header.linkname } : {}),
      ...(header.devmajor ? { devmajor: header.devmajor } : {}),
      ...(header.devminor ? { devminor: header.devminor } : {}),
      xattrs: headerXattrs(header),
    };
    const sink = pack.entry(toPackHeader(entry), (err) => next(err ?? undefined));
    (stream as unknown as Readable).pipe(sink);
  });
  ex.on('finish', () => pack.finalize());
  tar.pipe(ex as unknown as NodeJS.WritableStream);
  return Readable.from(pack);
}
