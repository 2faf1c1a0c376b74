/**
 * Garbage collection: mark everything reachable from the roots, then sweep the rest.
 *
 * Roots are the entries of index.json (tagged and untagged images), the digests of live leases
 * and the digests the build cache's records pin.
 * Marking follows indexes to manifests, manifests to their config and layers, configs to their
 * diffIDs; a live diffID keeps its snapshot and its compressed variants. A leased digest is all of
 * these at once (a blob, maybe a document to follow, maybe a diffID), since a lease does not say
 * what it pins.
 *
 * The caller holds the store lock from before marking until after sweeping; leases are only ever
 * extended under that lock, so content a running build has announced cannot be swept, and content
 * it announces later is not yet on disk when the candidates are listed.
 */
import { promises as fsp } from 'node:fs';
import { join } from 'node:path';
import { isDigest, type Digest } from '../oci/digest.js';
import { isErrno } from '../oci/layout/fs.js';
import type { OciLayout } from '../oci/layout/layout.js';
import { isIndexMediaType, isManifestMediaType } from '../oci/mediatypes.js';
import type { Descriptor, Index } from '../oci/types.js';
import type { CompressedMappings } from './compressed.js';
import { leaseExpired, readLeases, type LeaseRecord } from './leases.js';
import { isAlive, parseOwnerTag } from './owner.js';
import { removeTree, type Snapshots } from './snapshots.js';

export interface GcContext {
  layout: OciLayout;
  snapshots: Snapshots;
  compressed: CompressedMappings;
  leasesDir: string;
  tmpDir: string;
  /** Digests the build cache's records keep alive (roots, like leased digests). */
  cachePins?: () => Promise<Digest[]>;
  /** Images containers were made from (roots: a container needs its image's layers). */
  containerPins?: () => Promise<Digest[]>;
}

export interface GcResult {
  blobsRemoved: number;
  snapshotsRemoved: number;
  mappingsRemoved: number;
  leasesExpired: number;
  tempRemoved: number;
  bytesFreed: number;
  /** Referenced blobs that are missing or corrupt (reported, never fatal). */
  problems: string[];
}

/** Largest blob the collector reads to see whether it is a JSON document naming other content. */
const MAX_DOCUMENT = 4 * 1024 * 1024;
/** Temp entries without an owner tag are swept only once they are this old. */
const UNOWNED_TEMP_AGE_MS = 60 * 60_000;

/** Live leases; expired lease files are deleted on the way (the caller holds the lock). */
export async function liveLeases(leasesDir: string): Promise<{ live: LeaseRecord[]; expired: number }> {
  const live: LeaseRecord[] = [];
  let expired = 0;
  for (const rec of await readLeases(leasesDir)) {
    if (leaseExpired(rec)) {
      await fsp.rm(join(leasesDir, `${rec.id}.json`), { force: true });
      expired++;
    } else {
      live.push(rec);
    }
  }
  return { live, expired };
}

/**
 * Marks from `index` and the live leases, then sweeps. `leases` is the caller's own scan when it
 * already read them under the same lock hold.
 */
export async function collectGarbage(
  ctx: GcContext,
  index: Index,
  leases?: { live: LeaseRecord[]; expired: number },
): Promise<GcResult> {
  const result: GcResult = { blobsRemoved: 0, snapshotsRemoved: 0, mappingsRemoved: 0, leasesExpired: 0, tempRemoved: 0, bytesFreed: 0, problems: [] };

  // Candidates are listed before the roots are read: anything created later is not a candidate.
  const blobs = await ctx.layout.listBlobs();
  const snapshotIds = await ctx.snapshots.list();
  const mappingIds = await ctx.compressed.list();

  const { live, expired } = leases ?? (await liveLeases(ctx.leasesDir));
  result.leasesExpired = expired;

  const marked = new Set<Digest>();
  const liveDiffIDs = new Set<Digest>();
  const marker = new Marker(ctx.layout, marked, liveDiffIDs, result.problems);
  for (const d of index.manifests) await marker.visit(d);
  for (const lease of live) {
    for (const d of lease.digests) {
      liveDiffIDs.add(d);
      await marker.visit({ digest: d });
    }
  }
  for (const d of (await ctx.containerPins?.()) ?? []) await marker.visit({ digest: d });
  for (const d of (await ctx.cachePins?.()) ?? []) {
    liveDiffIDs.add(d);
    await marker.visit({ digest: d });
  }
  for (const diffID of liveDiffIDs) {
    for (const rec of await ctx.compressed.all(diffID)) marked.add(rec.digest);
  }

  for (const digest of blobs) {
    if (marked.has(digest)) continue;
    const size = (await ctx.layout.blobSize(digest)) ?? 0;
    if (await ctx.layout.removeBlob(digest)) {
      result.blobsRemoved++;
      result.bytesFreed += size;
    }
  }
  for (const id of snapshotIds) {
    if (liveDiffIDs.has(`sha256:${id}`)) continue;
    result.bytesFreed += await treeSize(join(ctx.snapshots.dir, id));
    await ctx.snapshots.remove(id);
    result.snapshotsRemoved++;
  }
  for (const id of mappingIds) {
    const diffID: Digest = `sha256:${id}`;
    if (!liveDiffIDs.has(diffID)) {
      result.mappingsRemoved += (await ctx.compressed.all(diffID)).length;
      await ctx.compressed.removeAll(id);
      continue;
    }
    for (const rec of await ctx.compressed.all(diffID)) {
      if (!(await ctx.layout.hasBlob(rec.digest))) {
        await ctx.compressed.remove(diffID, rec.compression);
        result.mappingsRemoved++;
      }
    }
  }
  await ctx.snapshots.pruneLinks();
  const temp = await sweepTemp(ctx.tmpDir);
  result.tempRemoved = temp.removed;
  result.bytesFreed += temp.bytes;
  return result;
}

/** Walks the reference graph from descriptors, marking blobs and diffIDs. */
export class Marker {
  constructor(
    private readonly layout: OciLayout,
    readonly marked: Set<Digest>,
    readonly diffIDs: Set<Digest>,
    private readonly problems: string[],
  ) {}

  async visit(desc: { digest: Digest; mediaType?: string; size?: number }): Promise<void> {
    if (this.marked.has(desc.digest)) return;
    this.marked.add(desc.digest);
    const mt = desc.mediaType;
    const known = mt !== undefined && (isIndexMediaType(mt) || isManifestMediaType(mt));
    if (mt !== undefined && !known) return;
    const doc = await this.readDocument(desc, known);
    if (!doc) return;
    await this.follow(doc);
  }

  private async follow(doc: Record<string, unknown>): Promise<void> {
    if (Array.isArray(doc.manifests)) {
      for (const child of doc.manifests as Descriptor[]) if (child && isDigest(child.digest)) await this.visit(child);
      return;
    }
    const config = doc.config as Descriptor | undefined;
    if (Array.isArray(doc.layers) && config && isDigest(config.digest)) {
      this.marked.add(config.digest);
      const cfg = await this.readDocument(config, true);
      const diffIDs = (cfg?.rootfs as { diff_ids?: unknown } | undefined)?.diff_ids;
      if (Array.isArray(diffIDs)) for (const d of diffIDs) if (isDigest(d)) this.diffIDs.add(d);
      for (const layer of doc.layers as Descriptor[]) if (layer && isDigest(layer.digest)) this.marked.add(layer.digest);
      return;
    }
    // A config reached through a lease: its diffIDs are live.
    const diffIDs = (doc.rootfs as { diff_ids?: unknown } | undefined)?.diff_ids;
    if (Array.isArray(diffIDs)) for (const d of diffIDs) if (isDigest(d)) this.diffIDs.add(d);
  }

  /** A blob parsed as JSON, when it is one; `expected` documents that are missing count as problems. */
  private async readDocument(desc: { digest: Digest; size?: number }, expected: boolean): Promise<Record<string, unknown> | undefined> {
    const path = this.layout.blobPath(desc.digest);
    let fh: fsp.FileHandle;
    try {
      fh = await fsp.open(path, 'r');
    } catch (err) {
      if (isErrno(err, 'ENOENT')) {
        if (expected) this.problems.push(`missing blob ${desc.digest}`);
        return undefined;
      }
      throw err;
    }
    try {
      const st = await fh.stat();
      if (st.size > MAX_DOCUMENT) return undefined;
      const first = Buffer.alloc(1);
      await fh.read(first, 0, 1, 0);
      if (first[0] !== 0x7b /* { */) return undefined;
    } finally {
      await fh.close();
    }
    try {
      const raw = await this.layout.readBlob(desc.size === undefined ? { digest: desc.digest } : { digest: desc.digest, size: desc.size });
      const value: unknown = JSON.parse(raw.toString('utf8'));
      return typeof value === 'object' && value !== null ? (value as Record<string, unknown>) : undefined;
    } catch (err) {
      if (expected) this.problems.push(`unreadable document ${desc.digest}: ${(err as Error).message}`);
      return undefined;
    }
  }
}

/**
 * The images the store's containers use: `imageDigest` of every `containers/<id>/container.json`
 * (the container's own directory, upper dir included, is not the collector's: `kiln rm` removes it).
 */
export async function containerImagePins(storeRoot: string): Promise<Digest[]> {
  const dir = join(storeRoot, 'containers');
  let ids: string[];
  try {
    ids = await fsp.readdir(dir);
  } catch {
    return [];
  }
  const out: Digest[] = [];
  for (const id of ids) {
    try {
      const rec = JSON.parse(await fsp.readFile(join(dir, id, 'container.json'), 'utf8')) as { imageDigest?: unknown };
      if (typeof rec.imageDigest === 'string' && isDigest(rec.imageDigest)) out.push(rec.imageDigest);
    } catch {
      // a container being created or removed
    }
  }
  return out;
}

/** Removes temp files and directories whose owning process is gone. */
export async function sweepTemp(tmpDir: string): Promise<{ removed: number; bytes: number }> {
  let names: string[];
  try {
    names = await fsp.readdir(tmpDir);
  } catch (err) {
    if (isErrno(err, 'ENOENT')) return { removed: 0, bytes: 0 };
    throw err;
  }
  let removed = 0;
  let bytes = 0;
  for (const name of names) {
    const path = join(tmpDir, name);
    const owner = parseOwnerTag(name);
    if (owner) {
      if (isAlive(owner)) continue;
    } else {
      const st = await fsp.lstat(path).catch(() => undefined);
      if (!st || Date.now() - st.mtimeMs < UNOWNED_TEMP_AGE_MS) continue;
    }
    bytes += await treeSize(path);
    await removeTree(path);
    removed++;
  }
  return { removed, bytes };
}

/** Apparent size of a file or tree (hard links counted once); unreadable parts count as zero. */
export async function treeSize(path: string, seen = new Set<string>()): Promise<number> {
  const st = await fsp.lstat(path).catch(() => undefined);
  if (!st) return 0;
  if (!st.isDirectory()) {
    if (st.nlink > 1) {
      const key = `${st.dev}:${st.ino}`;
      if (seen.has(key)) return 0;
      seen.add(key);
    }
    return st.size;
  }
  let total = 0;
  const names = await fsp.readdir(path).catch(() => [] as string[]);
  for (const name of names) total += await treeSize(join(path, name), seen);
  return total;
}
