/**
 * `kiln du`: `docker system df` for the store. One row each for images (the blobs on disk), the
 * unpacked layer snapshots, the build cache and temporary files; ACTIVE counts what a running kiln
 * process holds (images) or what a stored image uses (snapshots), and RECLAIMABLE what
 * `kiln prune -a` (images) or `kiln prune` (the rest) would free.
 */
import { openStoreForCommand } from '../store.js';
import { readdir } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { Digest } from '../../oci/digest.js';
import { treeSize } from '../../store/gc.js';
import { Catalog } from './catalog.js';
import { nameParts } from './names.js';
import { renderList } from './template.js';
import { tabwrite } from './tabwriter.js';
import { createdSince, humanSize, shortId } from './units.js';

export interface DuOptions {
  verbose?: boolean;
  format?: string;
}

const HEADERS = { Type: 'TYPE', TotalCount: 'TOTAL', Active: 'ACTIVE', Size: 'SIZE', Reclaimable: 'RECLAIMABLE' };

function reclaimable(bytes: number, total: number, percent: boolean): string {
  const size = humanSize(bytes, 4);
  return percent && total > 0 ? `${size} (${Math.floor((bytes * 100) / total)}%)` : size;
}

export async function runDu(root: string, options: DuOptions): Promise<void> {
  const store = await openStoreForCommand(root);
  const usage = await store.du();
  const leased = new Set<Digest>((await store.leases()).filter((l) => !l.expired).flatMap((l) => l.digests));
  const activeImages = usage.images.filter((i) => leased.has(i.digest));
  // Shared blobs make the sum of active images an upper bound of what they hold.
  const activeBytes = Math.min(usage.blobs.size, activeImages.reduce((n, i) => n + i.size, 0));

  const catalog = new Catalog(store);
  const images = await catalog.all();
  const diffIDs = new Set<Digest>(images.flatMap((i) => i.layers.map((l) => l.diffID)));
  let activeSnapshots = 0;
  let activeSnapshotBytes = 0;
  for (const diffID of diffIDs) {
    const snap = await store.snapshot(diffID);
    if (!snap) continue;
    activeSnapshots++;
    activeSnapshotBytes += await treeSize(dirname(snap.fs));
  }
  const cacheEntries = await countEntries(store.cacheDir);

  const rows = [
    {
      Type: 'Images',
      TotalCount: String(usage.images.length),
      Active: String(activeImages.length),
      Size: humanSize(usage.blobs.size, 4),
      Reclaimable: reclaimable(usage.blobs.size - activeBytes, usage.blobs.size, true),
    },
    {
      Type: 'Snapshots',
      TotalCount: String(usage.snapshots.count),
      Active: String(activeSnapshots),
      Size: humanSize(usage.snapshots.size, 4),
      Reclaimable: reclaimable(Math.max(0, usage.snapshots.size - activeSnapshotBytes), usage.snapshots.size, true),
    },
    {
      Type: 'Build Cache',
      TotalCount: String(cacheEntries),
      Active: '0',
      Size: humanSize(usage.buildCache.size, 4),
      Reclaimable: humanSize(usage.buildCache.size, 4),
    },
    {
      Type: 'Temporary Files',
      TotalCount: String(await countEntries(store.tmpDir)),
      Active: '0',
      Size: humanSize(usage.temp.size, 4),
      Reclaimable: humanSize(usage.temp.size, 4),
    },
  ];

  if (!options.verbose || options.format) {
    process.stdout.write(renderList(options.format, rows, { table: 'table {{.Type}}\t{{.TotalCount}}\t{{.Active}}\t{{.Size}}\t{{.Reclaimable}}', headers: HEADERS }));
    return;
  }
  // Verbose: one line per image (as `docker system df -v`), sizes as the blobs on disk.
  const perImage = new Map(usage.images.map((i) => [i.digest, i]));
  const now = Date.now();
  const lines = ['REPOSITORY\tTAG\tIMAGE ID\tCREATED\tSIZE\tSHARED SIZE\tUNIQUE SIZE\tIN USE'];
  for (const info of images) {
    const u = perImage.get(info.record.digest);
    const size = u?.size ?? 0;
    const unique = u?.uniqueSize ?? 0;
    const names = info.record.names.length ? info.record.names.map(nameParts) : [{ repository: '<none>', tag: '<none>' }];
    for (const n of names) {
      lines.push(
        [n.repository, n.tag ?? '<none>', shortId(info.id), createdSince(info.created, now), humanSize(size, 4), humanSize(size - unique, 4), humanSize(unique, 4), leased.has(info.record.digest) ? '1' : '0'].join('\t'),
      );
    }
  }
  const out = [
    'Images space usage:',
    '',
    tabwrite(lines.join('\n')),
    '',
    `Snapshots space usage: ${humanSize(usage.snapshots.size, 4)} in ${usage.snapshots.count} snapshots`,
    `Build cache usage: ${humanSize(usage.buildCache.size, 4)}`,
    `Temporary files: ${humanSize(usage.temp.size, 4)}`,
  ];
  process.stdout.write(`${out.join('\n')}\n`);
}

async function countEntries(dir: string): Promise<number> {
  return (await readdir(dir).catch(() => [] as string[])).length;
}
