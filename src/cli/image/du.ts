/**
 * `kiln du`: `docker system df` for the store. One row each for images (the blobs on disk),
 * containers (their read-write layers), local volumes, the unpacked layer snapshots, the build
 * cache and temporary files. ACTIVE counts what a running kiln process holds (images), what runs
 * (containers), what a container mounts (volumes) or what a stored image uses (snapshots);
 * RECLAIMABLE is what `kiln prune -a` (images), `kiln rm` of the stopped containers, `kiln volume
 * prune -a` or `kiln prune` (the rest) would free.
 *
 * Sizes are read from outside kiln's user namespace: for a rootless store, files a container made
 * as another user in a directory only that user may read are not counted.
 */
import { openStoreForCommand } from '../store.js';
import { readdir } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { Digest } from '../../oci/digest.js';
import { treeSize } from '../../store/gc.js';
import { ContainerStore, isRunning, shortContainerId, type ContainerRecord } from '../../run/containers.js';
import { Catalog } from './catalog.js';
import { nameParts } from './names.js';
import { renderList } from './template.js';
import { tabwrite } from './tabwriter.js';
import { createdSince, ellipsis, humanSize, shortId } from './units.js';

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
  const containers = await containerUsage(root);
  // An image is in use while a kiln process holds it or a container (running or not) is made from it.
  const inUse = new Set<Digest>([...leased, ...containers.map((c) => c.record.imageDigest)]);
  const activeImages = usage.images.filter((i) => inUse.has(i.digest));
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
  const volumes = await volumeUsage(root);
  const stoppedBytes = containers.filter((c) => !isRunning(c.record)).reduce((n, c) => n + c.size, 0);
  const containersBytes = containers.reduce((n, c) => n + c.size, 0);
  const unusedVolumeBytes = volumes.filter((v) => v.links === 0).reduce((n, v) => n + v.size, 0);
  const volumesBytes = volumes.reduce((n, v) => n + v.size, 0);

  const rows = [
    {
      Type: 'Images',
      TotalCount: String(usage.images.length),
      Active: String(activeImages.length),
      Size: humanSize(usage.blobs.size, 4),
      Reclaimable: reclaimable(usage.blobs.size - activeBytes, usage.blobs.size, true),
    },
    {
      Type: 'Containers',
      TotalCount: String(containers.length),
      Active: String(containers.filter((c) => isRunning(c.record)).length),
      Size: humanSize(containersBytes, 4),
      Reclaimable: reclaimable(stoppedBytes, containersBytes, true),
    },
    {
      Type: 'Local Volumes',
      TotalCount: String(volumes.length),
      Active: String(volumes.filter((v) => v.links > 0).length),
      Size: humanSize(volumesBytes, 4),
      Reclaimable: reclaimable(unusedVolumeBytes, volumesBytes, true),
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
  const lines = ['REPOSITORY\tTAG\tIMAGE ID\tCREATED\tSIZE\tSHARED SIZE\tUNIQUE SIZE\tCONTAINERS'];
  for (const info of images) {
    const u = perImage.get(info.record.digest);
    const size = u?.size ?? 0;
    const unique = u?.uniqueSize ?? 0;
    const names = info.record.names.length ? info.record.names.map(nameParts) : [{ repository: '<none>', tag: '<none>' }];
    for (const n of names) {
      lines.push(
        [n.repository, n.tag ?? '<none>', shortId(info.id), createdSince(info.created, now), humanSize(size, 4), humanSize(size - unique, 4), humanSize(unique, 4), String(containers.filter((c) => c.record.imageDigest === info.record.digest).length)].join('\t'),
      );
    }
  }
  const containerLines = ['CONTAINER ID\tIMAGE\tCOMMAND\tLOCAL VOLUMES\tSIZE\tCREATED\tSTATUS\tNAMES'];
  const { statusText } = await import('../run/manage.js');
  for (const { record: c, size } of containers) {
    const volumeCount = c.mounts.filter((m) => m.type === 'volume').length;
    const command = [c.config.path, ...c.config.args].join(' ');
    containerLines.push([shortContainerId(c.id), c.image, `"${ellipsis(command, 20)}"`, String(volumeCount), humanSize(size, 4), createdSince(new Date(c.created), now), statusText(c, now), c.name].join('\t'));
  }
  const volumeLines = ['VOLUME NAME\tLINKS\tSIZE'];
  for (const v of volumes) volumeLines.push([v.name, String(v.links), humanSize(v.size, 4)].join('\t'));
  const out = [
    'Images space usage:',
    '',
    tabwrite(lines.join('\n')),
    '',
    'Containers space usage:',
    '',
    tabwrite(containerLines.join('\n')),
    '',
    'Local Volumes space usage:',
    '',
    tabwrite(volumeLines.join('\n')),
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

/** Every container with the size of its read-write layer (the upper dir, or its whole tree where it has a copy). */
async function containerUsage(root: string): Promise<Array<{ record: ContainerRecord; size: number }>> {
  const store = ContainerStore.open(root);
  const out = [];
  for (const record of await store.list()) {
    const size = (await treeSize(store.pathOf(record.id, 'upper'))) + (await treeSize(store.pathOf(record.id, 'rootfs')));
    out.push({ record, size });
  }
  return out;
}

/** Every volume with its size and the number of containers that mount it. */
async function volumeUsage(root: string): Promise<Array<{ name: string; links: number; size: number }>> {
  const { VolumeStore } = await import('../../run/volumes.js');
  const volumes = VolumeStore.open(root);
  const users = await volumes.usage();
  const out = [];
  for (const v of await volumes.list()) out.push({ name: v.name, links: users.get(v.name)?.length ?? 0, size: await treeSize(v.mountpoint) });
  return out;
}
