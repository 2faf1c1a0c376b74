/** `kiln tag`, `kiln rmi` and `kiln prune`: naming and removing images, worded as docker words it. */
import { rm } from 'node:fs/promises';
import { throwCollected } from '../collected-errors.js';
import { confirm, PruneCancelledError } from '../confirm.js';
import { openStoreForCommand } from '../store.js';
import { KilnError } from '../../errors.js';
import type { Digest } from '../../oci/digest.js';
import { Catalog } from './catalog.js';
import { displayRef, familiar } from './names.js';
import { ImageReferencedError } from './errors.js';
import { humanSize, shortId } from './units.js';

export async function runTag(root: string, source: string, target: string): Promise<void> {
  const store = await openStoreForCommand(root);
  const { image } = await new Catalog(store).find(source, 'tag', displayRef(source));
  await store.tag(image.record.digest, target);
}

export interface RmiOptions {
  force?: boolean;
  prune: boolean;
}

/**
 * Removes each reference in turn, printing `Untagged: NAME` and `Deleted: ID` lines; a reference
 * that fails is reported and the others still go (exit status 1 at the end, as docker). Deleted
 * images' content is collected right away (like docker's synchronous delete) unless `--no-prune`.
 */
export async function runRmi(root: string, refs: string[], options: RmiOptions): Promise<void> {
  const store = await openStoreForCommand(root, { namespace: true });
  const errors: KilnError[] = [];
  let deletedAny = false;
  for (const ref of refs) {
    try {
      // Each removal changes the store: resolve every reference against its current state.
      const { image, name } = await new Catalog(store).find(ref, 'rmi', displayRef(ref));
      if (!name && image.record.names.length > 1 && !options.force) throw new ImageReferencedError(shortId(image.id));
      // The last reference to an image a container uses stays unless forced (the container keeps its layers either way).
      if (!options.force && (!name || image.record.names.length <= 1)) await refuseIfInUse(root, image.record.digest, image.id, name);
      const result = await store.remove(name ?? image.record.digest, { force: options.force });
      const lines = result.untagged.map((n) => `Untagged: ${familiar(n)}`);
      for (const d of result.deleted) lines.push(`Deleted: ${d === image.record.digest ? image.id : d}`);
      if (lines.length) process.stdout.write(`${lines.join('\n')}\n`);
      deletedAny ||= result.deleted.length > 0;
    } catch (err) {
      if (!(err instanceof KilnError)) throw err;
      errors.push(err);
    }
  }
  if (deletedAny && options.prune) await store.gc();
  throwCollected(errors);
}

/** docker's refusal to remove an image a container was created from. */
async function refuseIfInUse(root: string, digest: Digest, id: Digest, name: string | undefined): Promise<void> {
  const { ContainerStore, isRunning, shortContainerId } = await import('../../run/containers.js');
  const users = (await ContainerStore.open(root).list()).filter((c) => c.imageDigest === digest);
  if (!users.length) return;
  const user = users.find(isRunning) ?? users[0]!;
  const message = name
    ? `conflict: unable to remove repository reference "${familiar(name)}" (must force) - container ${shortContainerId(user.id)} is using its referenced image ${shortId(id)}`
    : `conflict: unable to delete ${shortId(id)} (must be forced) - image is being used by ${isRunning(user) ? 'running' : 'stopped'} container ${shortContainerId(user.id)}`;
  throw new KilnError('IMAGE_IN_USE', message, { hint: `remove the container first (kiln rm ${user.name}), or use rmi -f` });
}

export interface PruneOptions {
  all?: boolean;
  force?: boolean;
}

/**
 * `docker image prune`: removes dangling images (`-a`: every image) that no running kiln process
 * holds, then everything nothing references (layers, snapshots, expired leases, the temp files of
 * processes that died), and prints what went and the space reclaimed.
 */
export async function runPrune(root: string, options: PruneOptions): Promise<void> {
  if (!options.force) {
    const warning = options.all
      ? 'WARNING! This will remove all images not in use by a running kiln process.'
      : 'WARNING! This will remove all dangling images.';
    if (!(await confirm(`${warning}\nAre you sure you want to continue?`))) throw new PruneCancelledError('image');
  }
  const store = await openStoreForCommand(root, { namespace: true });
  // Image IDs must be read before the content goes.
  const catalog = new Catalog(store);
  const ids = new Map<Digest, Digest>();
  for (const info of await catalog.all()) ids.set(info.record.digest, info.id);
  const result = await store.prune({ all: options.all });
  // With -a the build cache goes, RUN --mount=type=cache directories too, unless a build may be using one.
  let mounts: { removed: number; bytes: number } | undefined;
  let mountsKept = false;
  if (options.all) {
    const { countCacheMounts, retireCacheMounts } = await import('../../sandbox/cache.js');
    const { treeSize } = await import('../../store/gc.js');
    const retired = await store.whenIdle(() => retireCacheMounts(store.cacheDir));
    mountsKept = retired === undefined && (await countCacheMounts(store.cacheDir)) > 0;
    if (retired) {
      // Deleted outside the store lock: a big cache takes a while.
      let bytes = 0;
      for (const path of retired.doomed) {
        bytes += await treeSize(path);
        await rm(path, { recursive: true, force: true });
      }
      mounts = { removed: retired.removed, bytes };
    }
  }
  let out = '';
  if (result.imagesRemoved.length) {
    out += 'Deleted Images:\n';
    for (const rec of result.imagesRemoved) {
      for (const n of rec.names) out += `untagged: ${familiar(n)}\n`;
      out += `deleted: ${ids.get(rec.digest) ?? rec.digest}\n`;
    }
    out += '\n';
  }
  if (mounts?.removed) out += `Deleted cache mounts: ${mounts.removed}\n\n`;
  if (mountsKept) out += 'Cache mounts kept: another kiln process is building, pulling or pushing\n\n';
  out += `Total reclaimed space: ${humanSize(result.bytesFreed + (mounts?.bytes ?? 0), 4)}\n`;
  process.stdout.write(out);
}
