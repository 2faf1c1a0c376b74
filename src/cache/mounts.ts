/**
 * Cache mounts (`RUN --mount=type=cache`) leaving and entering the store with `mounts=true`: each
 * id's directory as one gzip tar, a content-addressed blob in the cache manifest. Export skips a
 * mount above the size cap; import fills a mount the store does not have yet, before steps run.
 */
import { promises as fsp } from 'node:fs';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { cacheDirName } from '../sandbox/cache.js';
import type { Lease, Store } from '../store/index.js';
import type { Digest } from '../oci/digest.js';

function mountDir(store: Store, id: string): string {
  return join(store.cacheDir, 'mounts', cacheDirName(id), 'data');
}

/** Bytes of the files under `dir` (0 when it does not exist). */
async function treeBytes(dir: string, stopAbove: number): Promise<number> {
  let total = 0;
  const walk = async (d: string): Promise<void> => {
    let entries;
    try {
      entries = await fsp.readdir(d, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) {
      if (total > stopAbove) return;
      const p = join(d, e.name);
      if (e.isDirectory()) await walk(p);
      else if (e.isFile()) total += (await fsp.lstat(p)).size;
    }
  };
  await walk(dir);
  return total;
}

export type MountExport =
  | { kind: 'exported'; id: string; digest: Digest; size: number; files: number }
  | { kind: 'skipped'; id: string; reason: string };

/** The mount's directory as a gzip tar blob in the store (leased), unless it is missing or too large. */
export async function exportMount(store: Store, id: string, maxSize: number, lease: Lease): Promise<MountExport> {
  const dir = mountDir(store, id);
  try {
    await fsp.access(dir);
  } catch {
    return { kind: 'skipped', id, reason: 'it has not been used on this machine' };
  }
  const files = await treeBytes(dir, maxSize);
  if (files > maxSize) return { kind: 'skipped', id, reason: `it holds more than the ${maxSize}-byte limit (mounts-max-size)` };
  const { writeLayerTar, compress } = await import('../oci/layer/index.js');
  const written = await store.writeBlob(compress(writeLayerTar(dir), 'gzip'), { lease });
  return { kind: 'exported', id, digest: written.digest, size: written.size, files };
}

/** Unpacks an exported mount into the store when the store has no such mount; answers whether it did. */
export async function restoreMount(store: Store, id: string, open: () => Promise<Readable>, opts: { canChown: boolean }): Promise<boolean> {
  const dir = mountDir(store, id);
  const existing = await fsp.readdir(dir).catch(() => undefined);
  if (existing && existing.length > 0) return false;
  const base = join(dir, '..');
  await fsp.mkdir(base, { recursive: true });
  await fsp.writeFile(join(base, 'id'), id).catch(() => undefined);
  const tmp = join(base, `restore-${process.pid}-${Date.now()}`);
  await fsp.mkdir(tmp);
  try {
    const { decompress, extractLayer } = await import('../oci/layer/index.js');
    try {
      await extractLayer(decompress(await open()), tmp, { ownership: opts.canChown ? 'keep' : 'ignore' });
    } catch (err) {
      if (!opts.canChown) throw err;
      // A namespace that maps one uid cannot give files other owners: they become the builder's.
      await fsp.rm(tmp, { recursive: true, force: true });
      await fsp.mkdir(tmp);
      await extractLayer(decompress(await open()), tmp, { ownership: 'ignore' });
    }
    await fsp.rm(dir, { recursive: true, force: true });
    await fsp.rename(tmp, dir);
  } catch (err) {
    await fsp.rm(tmp, { recursive: true, force: true });
    throw err;
  }
  return true;
}
