/**
 * A RUN step's changes as an OCI layer, stored uncompressed in the store (its digest is its diffID).
 *
 * overlay: the upper dir is the diff; `writeLayerTar(upper, { mode: 'overlay-diff' })` turns overlay's
 * whiteouts and opaque directories into OCI's and drops overlay's xattrs.
 *
 * copy: the step ran in a full copy of the layers, so the tree is compared with the layers: an entry
 * is new when the layers lack it, changed when its type, owner, mode, size, mtime, link target or
 * device differ, or, for anything whose ctime shows the step touched it, when its content or xattrs
 * differ; missing entries become whiteouts. Directories count as changed only for owner, mode or
 * xattrs (their mtime moves whenever a child does), and are written when anything below them is,
 * as overlay's copy-up would have put them in the upper dir.
 */
import { closeSync, lstatSync, openSync, readSync, readdirSync, readlinkSync, type BigIntStats } from 'node:fs';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { getAttributeSync, listAttributesSync } from '@napi-rs/xattr';
import { writeLayerTar, writeTarEntries, type TarEntrySpec } from '../oci/layer/index.js';
import { MediaType } from '../oci/mediatypes.js';
import type { Digest } from '../oci/digest.js';
import type { Descriptor } from '../oci/types.js';
import type { Lease } from '../store/leases.js';
import type { Store } from '../store/store.js';
import type { LayerStack } from './layers.js';

export interface CommittedLayer {
  /** The uncompressed layer blob (media type application/vnd.oci.image.layer.v1.tar). */
  layer: Descriptor;
  diffID: Digest;
  /** Nothing changed: the layer holds no entries. */
  empty: boolean;
}

export interface CommitOptions {
  store: Store;
  lease?: Lease;
  sourceDateEpoch?: number;
  /** Rewrites the tar before it is stored (owner restoration in the single-uid mode). */
  transform?: (tar: Readable) => Readable;
  signal?: AbortSignal;
}

export async function storeLayer(tar: Readable, empty: boolean, opts: CommitOptions): Promise<CommittedLayer> {
  const source = opts.transform ? opts.transform(tar) : tar;
  const written = await opts.store.writeBlob(source, opts.lease ? { lease: opts.lease } : {});
  return { layer: { mediaType: MediaType.ociLayer, digest: written.digest, size: written.size }, diffID: written.digest, empty };
}

/** Commits an overlay upper dir. */
export async function commitUpper(upper: string, opts: CommitOptions): Promise<CommittedLayer> {
  const empty = readdirSync(upper).length === 0;
  const tar = writeLayerTar(upper, {
    mode: 'overlay-diff',
    ...(opts.sourceDateEpoch !== undefined ? { sourceDateEpoch: opts.sourceDateEpoch } : {}),
    ...(opts.signal ? { signal: opts.signal } : {}),
  });
  return storeLayer(tar, empty, opts);
}

/** Commits a copy-snapshotter rootfs by comparing it with its lower layers. */
export async function commitCopy(rootfs: string, lowers: LayerStack, startedMs: number, opts: CommitOptions): Promise<CommittedLayer> {
  const specs = diffTree(rootfs, lowers, startedMs);
  const tar = writeTarEntries(specs, {
    ...(opts.sourceDateEpoch !== undefined ? { sourceDateEpoch: opts.sourceDateEpoch } : {}),
    ...(opts.signal ? { signal: opts.signal } : {}),
  });
  return storeLayer(tar, specs.length === 0, opts);
}

/** The tar entries that turn `lowers` into `rootfs`. */
export function diffTree(rootfs: string, lowers: LayerStack, startedMs: number): TarEntrySpec[] {
  const out: TarEntrySpec[] = [];
  walk([], out);
  return out;

  /** Adds the changes under `dir`; answers whether there were any. */
  function walk(dir: string[], acc: TarEntrySpec[]): boolean {
    const here = join(rootfs, ...dir);
    const names = new Set(readdirSync(here));
    let changed = false;
    for (const name of [...names].sort()) {
      const rel = [...dir, name];
      const path = join(here, name);
      const st = lstatSync(path, { bigint: true });
      const lower = lowers.lookup(rel);
      const lowerPath = lower ? lowers.hostPath(lower, rel) : undefined;
      const lst = lowerPath ? lstatSync(lowerPath, { bigint: true }) : undefined;
      const touched = Number(st.ctimeMs) >= startedMs;
      if (st.isDirectory()) {
        const self = !lst || !lst.isDirectory() || metaDiffers(st, lst) || (touched && xattrsDiffer(path, lowerPath!));
        const sub: TarEntrySpec[] = [];
        const below = walk(rel, sub);
        if (self || below) {
          acc.push({ path: `/${rel.join('/')}`, source: path });
          changed = true;
        }
        acc.push(...sub);
        continue;
      }
      if (!lst || nodeDiffers(st, lst, path, lowerPath!, touched)) {
        acc.push({ path: `/${rel.join('/')}`, source: path });
        changed = true;
      }
    }
    // What the layers have here and the tree no longer does.
    for (const name of lowerNames(lowers, dir)) {
      if (names.has(name)) continue;
      acc.push({ path: `/${[...dir, name].join('/')}`, type: 'whiteout' });
      changed = true;
    }
    return changed;
  }
}

/** Names present in the merged view of `dir`. */
function lowerNames(stack: LayerStack, dir: string[]): string[] {
  const candidates = new Set<string>();
  for (const layer of stack.layers) {
    try {
      for (const n of readdirSync(join(layer, ...dir))) candidates.add(n);
    } catch {
      // not a directory in this layer
    }
  }
  return [...candidates].filter((n) => stack.lookup([...dir, n]) !== undefined);
}

function metaDiffers(a: BigIntStats, b: BigIntStats): boolean {
  return (a.mode & 0o177777n) !== (b.mode & 0o177777n) || a.uid !== b.uid || a.gid !== b.gid;
}

function nodeDiffers(a: BigIntStats, b: BigIntStats, pa: string, pb: string, touched: boolean): boolean {
  if (metaDiffers(a, b) || a.size !== b.size || a.mtimeNs !== b.mtimeNs || a.rdev !== b.rdev) return true;
  if (a.isSymbolicLink()) return readlinkSync(pa) !== readlinkSync(pb);
  if (!touched) return false;
  return xattrsDiffer(pa, pb) || (a.isFile() && contentDiffers(pa, pb));
}

function xattrsDiffer(a: string, b: string): boolean {
  const read = (p: string) => {
    try {
      return listAttributesSync(p)
        .filter((n) => !n.startsWith('user.overlay.') && !n.startsWith('trusted.overlay.'))
        .sort()
        .map((n) => `${n}=${getAttributeSync(p, n)?.toString('base64') ?? ''}`)
        .join('\0');
    } catch {
      return '';
    }
  };
  return read(a) !== read(b);
}

function contentDiffers(a: string, b: string): boolean {
  const fa = openSync(a, 'r');
  const fb = openSync(b, 'r');
  try {
    const ba = Buffer.allocUnsafe(1 << 16);
    const bb = Buffer.allocUnsafe(1 << 16);
    for (;;) {
      const na = readSync(fa, ba, 0, ba.length, null);
      const nb = readSync(fb, bb, 0, bb.length, null);
      if (na !== nb || !ba.subarray(0, na).equals(bb.subarray(0, nb))) return true;
      if (na === 0) return false;
    }
  } finally {
    closeSync(fa);
    closeSync(fb);
  }
}
