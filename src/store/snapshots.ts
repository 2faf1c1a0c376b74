/**
 * Unpacked layers, ready to be overlay lowerdirs. Each snapshot is one layer's own diff in overlay
 * form (whiteouts as 0/0 char devices, opaque dirs by xattr), so its content depends only on the
 * layer's diffID and one snapshot serves every image that has the layer, whatever lies below it.
 *
 *   snapshots/<diffID hex>/fs          the unpacked layer
 *   snapshots/<diffID hex>/meta.json   { diffID, created }
 *   l/<12 hex>  ->  ../snapshots/<diffID hex>/fs
 *
 * A snapshot is unpacked into a temp directory and renamed into place, so it is either complete or
 * absent; if two processes unpack the same layer at once, the first rename wins and the other copy
 * is discarded. The short `l/` links (as containers/storage does) keep the overlay option string
 * short: mounted with the store root as working directory, each lower costs 15 bytes, so even 250
 * layers stay under the kernel's 4 KB limit on mount options.
 */
import { promises as fsp } from 'node:fs';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { finished } from 'node:stream/promises';
import { DigestingStream, digestHex, type Digest } from '../oci/digest.js';
import { BlobVerificationError } from '../oci/layout/errors.js';
import { fsyncDir, hexNamesIn, isErrno, statOrUndefined, tempName } from '../oci/layout/fs.js';
import { StoreError } from './errors.js';
import type { LayerCodec } from './layer-codec.js';
import { isAlive, ownerTag, parseOwnerTag } from './owner.js';

export interface Snapshot {
  diffID: Digest;
  /** Directory name under `snapshots/` (the diffID's hex). */
  id: string;
  /** Absolute path of the unpacked layer. */
  fs: string;
  /** Short link relative to the store root (`l/<id>`), for lowerdir options. */
  link: string;
}

export const SHORT_LINK_LENGTH = 12;

export class Snapshots {
  readonly dir: string;
  readonly linkDir: string;

  constructor(
    readonly root: string,
    private readonly tmpDir: string,
    private readonly codec: () => Promise<LayerCodec>,
  ) {
    this.dir = join(root, 'snapshots');
    this.linkDir = join(root, 'l');
  }

  private describe(diffID: Digest): Snapshot {
    const id = digestHex(diffID);
    return { diffID, id, fs: join(this.dir, id, 'fs'), link: `l/${id.slice(0, SHORT_LINK_LENGTH)}` };
  }

  /** The snapshot of a layer if it has been unpacked. */
  async get(diffID: Digest): Promise<Snapshot | undefined> {
    const snap = this.describe(diffID);
    if (!(await statOrUndefined(snap.fs))) return undefined;
    await this.ensureLink(snap);
    return snap;
  }

  /** Unpacks `openLayer()` (the uncompressed tar, verified against `diffID`) unless already done. */
  async create(diffID: Digest, openLayer: () => Promise<Readable>): Promise<Snapshot> {
    const existing = await this.get(diffID);
    if (existing) return existing;
    const snap = this.describe(diffID);
    const codec = await this.codec();
    await fsp.mkdir(this.tmpDir, { recursive: true });
    const work = join(this.tmpDir, tempName(ownerTag(), '.snapshot'));
    await fsp.mkdir(join(work, 'fs'), { recursive: true });
    try {
      const source = await openLayer();
      const digesting = new DigestingStream();
      source.once('error', (err) => digesting.destroy(err));
      source.pipe(digesting);
      await codec.extract(digesting, join(work, 'fs'));
      // The extractor may stop at the end-of-archive marker; the digest covers every byte.
      if (!digesting.readableEnded) {
        digesting.resume();
        await finished(digesting);
      }
      if (digesting.digest !== diffID) {
        throw new BlobVerificationError(diffID, 'the layer stream given for a snapshot', { actualDigest: digesting.digest });
      }
      await fsp.writeFile(join(work, 'meta.json'), JSON.stringify({ diffID, created: new Date().toISOString() }));
      await fsp.mkdir(this.dir, { recursive: true });
      try {
        await fsp.rename(work, join(this.dir, snap.id));
        await fsyncDir(this.dir);
      } catch (err) {
        // Another process finished the same snapshot first; theirs is as good as ours.
        if (!isErrno(err, 'ENOTEMPTY', 'EEXIST')) throw err;
      }
    } finally {
      await removeTree(work);
    }
    await this.ensureLink(snap);
    return snap;
  }

  /** Creates `l/<short>` for a snapshot, or checks it. */
  async ensureLink(snap: Snapshot): Promise<void> {
    const linkPath = join(this.root, snap.link);
    const target = `../snapshots/${snap.id}/fs`;
    await fsp.mkdir(this.linkDir, { recursive: true });
    try {
      await fsp.symlink(target, linkPath);
      return;
    } catch (err) {
      if (!isErrno(err, 'EEXIST')) throw err;
    }
    const current = await fsp.readlink(linkPath).catch(() => undefined);
    if (current === target) return;
    const other = current && /^\.\.\/snapshots\/([a-f0-9]{64})\/fs$/.exec(current)?.[1];
    if (other && (await statOrUndefined(join(this.dir, other)))) {
      throw new StoreError(this.root, `snapshot link ${snap.link} is taken by layer sha256:${other}`, {
        hint: 'two layers share the first 12 hex digits of their diffID; report this to the kiln developers',
      });
    }
    // A link left behind by a removed snapshot: replace it atomically.
    const tmp = join(this.linkDir, `.${tempName(ownerTag())}`);
    await fsp.symlink(target, tmp);
    await fsp.rename(tmp, linkPath);
  }

  /** Snapshot ids (diffID hex) present. */
  list(): Promise<string[]> {
    return hexNamesIn(this.dir);
  }

  /**
   * Deletes a snapshot: first renamed into the temp area (so it vanishes at once and a crash halfway
   * through the deletion leaves only debris for the next prune), then its link, then the tree.
   */
  async remove(id: string): Promise<void> {
    const trash = join(this.tmpDir, tempName(ownerTag(), '.trash'));
    await fsp.mkdir(this.tmpDir, { recursive: true });
    try {
      await fsp.rename(join(this.dir, id), trash);
    } catch (err) {
      if (isErrno(err, 'ENOENT')) return;
      throw err;
    }
    const linkPath = join(this.linkDir, id.slice(0, SHORT_LINK_LENGTH));
    if ((await fsp.readlink(linkPath).catch(() => undefined)) === `../snapshots/${id}/fs`) await fsp.rm(linkPath, { force: true });
    await removeTree(trash);
  }

  /** Removes `l/` entries whose snapshot is gone; answers how many. */
  async pruneLinks(): Promise<number> {
    let names: string[];
    try {
      names = await fsp.readdir(this.linkDir);
    } catch (err) {
      if (isErrno(err, 'ENOENT')) return 0;
      throw err;
    }
    let removed = 0;
    for (const name of names) {
      const path = join(this.linkDir, name);
      const target = await fsp.readlink(path).catch(() => undefined);
      const id = target && /^\.\.\/snapshots\/([a-f0-9]{64})\/fs$/.exec(target)?.[1];
      if (id && (await statOrUndefined(join(this.dir, id)))) continue;
      if (name.startsWith('.')) {
        // A link being made by a live process is left alone.
        const owner = parseOwnerTag(name.slice(1));
        if (owner && isAlive(owner)) continue;
      }
      await fsp.rm(path, { force: true });
      removed++;
    }
    return removed;
  }
}

/**
 * `rm -rf` that also copes with unpacked content a non-root owner cannot delete as is (directories
 * without write or search permission): on EACCES it grants itself access and retries.
 */
export async function removeTree(path: string): Promise<void> {
  try {
    await fsp.rm(path, { recursive: true, force: true });
    return;
  } catch (err) {
    if (!isErrno(err, 'EACCES', 'EPERM', 'ENOTEMPTY')) throw err;
  }
  await makeWritable(path);
  await fsp.rm(path, { recursive: true, force: true });
}

async function makeWritable(path: string): Promise<void> {
  const st = await fsp.lstat(path).catch(() => undefined);
  if (!st?.isDirectory()) return;
  await fsp.chmod(path, 0o700).catch(() => undefined);
  const names = await fsp.readdir(path).catch(() => [] as string[]);
  for (const name of names) await makeWritable(join(path, name));
}
