/**
 * Named and anonymous volumes: directories whose data outlives the containers that mount them.
 *
 *   <store>/volumes/<name>/_data         the data, bind-mounted into containers (docker's layout)
 *   <store>/volumes/<name>/volume.json   name, creation time, labels, whether it is anonymous
 *
 * A volume appears whole or not at all: it is assembled in a hidden temp directory beside the
 * others and renamed into place, and rename refuses to replace a directory that exists, so two
 * kiln processes creating the same name both end up with the one volume that won. Removal renames
 * it out of sight before deleting, so a half-deleted volume is never listed or mounted.
 *
 * A volume is in use while any container record (containers/<id>/container.json) names it in its
 * mounts; in-use volumes are never removed. Rootless kiln creates volumes as root of its user
 * namespace, i.e. owned by the user on the host; what containers write inside may belong to the
 * user's subordinate ids, which is why removal runs inside that namespace.
 */
import { randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import { join } from 'node:path';
import { KilnError, UsageError } from '../errors.js';
import { isErrno, namesIn, writeFileAtomic } from '../oci/layout/fs.js';
import { isAlive, ownerTag, parseOwnerTag } from '../store/owner.js';
import { removeTree } from '../store/snapshots.js';

export interface VolumeInfo {
  name: string;
  /** The data directory a container mounts. */
  mountpoint: string;
  /** RFC 3339, seconds precision (as docker shows it). */
  createdAt: string;
  labels: Record<string, string>;
  /** Made for an image VOLUME or a `-v /path` without a name; `volume prune` removes these by default. */
  anonymous: boolean;
}

/** docker's label on anonymous volumes, which its `volume prune` goes by. */
export const ANONYMOUS_LABEL = 'com.docker.volume.anonymous';

/** docker's rule for local volume names (at least two characters). */
const VALID_VOLUME_NAME = /^[a-zA-Z0-9][a-zA-Z0-9_.-]+$/;

const METADATA = 'volume.json';
const DATA = '_data';

interface VolumeMetadata {
  name: string;
  createdAt: string;
  labels: Record<string, string>;
  anonymous: boolean;
}

export class NoSuchVolumeError extends KilnError {
  constructor(readonly volume: string, action = 'get') {
    super('VOLUME_NOT_FOUND', `${action} ${volume}: no such volume`, { hint: 'kiln volume ls lists the volumes' });
  }
}

export class VolumeInUseError extends KilnError {
  constructor(
    readonly volume: string,
    readonly containers: string[],
  ) {
    super('VOLUME_IN_USE', `remove ${volume}: volume is in use - [${containers.join(', ')}]`, {
      hint: 'remove the containers that use it first (kiln rm)',
    });
  }
}

/** Throws docker's error for a name a local volume cannot have. */
export function validateVolumeName(name: string): void {
  if (!VALID_VOLUME_NAME.test(name)) {
    throw new UsageError(
      `create ${name}: "${name}" includes invalid characters for a local volume name, only "[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed. If you intended to pass a host directory, use absolute path`,
    );
  }
}

export class VolumeStore {
  readonly dir: string;

  private constructor(readonly storeRoot: string) {
    this.dir = join(storeRoot, 'volumes');
  }

  static open(storeRoot: string): VolumeStore {
    return new VolumeStore(storeRoot);
  }

  /** Where a volume's data lives (whether or not it exists). */
  mountpointOf(name: string): string {
    return join(this.dir, name, DATA);
  }

  /**
   * Creates a volume (a random 64-hex name when none is given). An existing volume of that name is
   * returned as it is, as docker does.
   */
  async create(name?: string, opts: { labels?: Record<string, string>; anonymous?: boolean } = {}): Promise<VolumeInfo> {
    const volumeName = name ?? randomBytes(32).toString('hex');
    validateVolumeName(volumeName);
    const existing = await this.get(volumeName);
    if (existing) return existing;

    await fsp.mkdir(this.dir, { recursive: true, mode: 0o711 });
    const tmp = join(this.dir, `.tmp-${ownerTag()}-${randomBytes(6).toString('hex')}`);
    const labels = { ...(opts.labels ?? {}) };
    if (opts.anonymous) labels[ANONYMOUS_LABEL] ??= '';
    const meta: VolumeMetadata = { name: volumeName, createdAt: rfc3339Now(), labels, anonymous: Boolean(opts.anonymous) };
    try {
      await fsp.mkdir(tmp, { mode: 0o701 });
      await fsp.mkdir(join(tmp, DATA), { mode: 0o755 });
      await writeFileAtomic(join(tmp, METADATA), `${JSON.stringify(meta, null, 2)}\n`, { tmpDir: tmp, tempPrefix: ownerTag() });
      await fsp.rename(tmp, join(this.dir, volumeName));
    } catch (err) {
      await fsp.rm(tmp, { recursive: true, force: true });
      // Another process created it first: theirs is the volume.
      if (isErrno(err, 'EEXIST', 'ENOTEMPTY')) {
        const winner = await this.get(volumeName);
        if (winner) return winner;
      }
      throw err;
    }
    return this.info(meta);
  }

  async get(name: string): Promise<VolumeInfo | undefined> {
    if (!VALID_VOLUME_NAME.test(name)) return undefined;
    const dir = join(this.dir, name);
    let text: string;
    try {
      text = await fsp.readFile(join(dir, METADATA), 'utf8');
    } catch (err) {
      if (!isErrno(err, 'ENOENT', 'ENOTDIR')) throw err;
      // A data directory without its record (made by hand, or by another tool): still a volume.
      const st = await fsp.stat(join(dir, DATA)).catch(() => undefined);
      if (!st?.isDirectory()) return undefined;
      return this.info({ name, createdAt: rfc3339(st.birthtime.getTime() ? st.birthtime : st.mtime), labels: {}, anonymous: false });
    }
    const meta = JSON.parse(text) as VolumeMetadata;
    return this.info({ ...meta, name });
  }

  /** The volume of that name, created when missing (what `-v NAME:/path` does). */
  async ensure(name: string): Promise<VolumeInfo> {
    return (await this.get(name)) ?? this.create(name);
  }

  /**
   * Removes a volume and its data. A volume a container uses is refused (even with `force`, as
   * docker does); `force` only makes a missing volume not an error.
   */
  async remove(name: string, opts: { force?: boolean } = {}): Promise<void> {
    const volume = await this.get(name);
    if (!volume) {
      if (opts.force) return;
      throw new NoSuchVolumeError(name);
    }
    const users = (await this.usage()).get(name);
    if (users?.length) throw new VolumeInUseError(name, users);
    await this.discard(name);
  }

  async list(): Promise<VolumeInfo[]> {
    const out: VolumeInfo[] = [];
    for (const name of (await namesIn(this.dir)).sort()) {
      if (name.startsWith('.')) continue;
      const v = await this.get(name);
      if (v) out.push(v);
    }
    return out;
  }

  /**
   * Removes the volumes no container uses: only anonymous ones unless `all` (docker ≥ 23). Answers
   * the names removed and the bytes their data held. `only` narrows the choice further (prune filters).
   */
  async prune(opts: { all?: boolean; only?: (v: VolumeInfo) => boolean } = {}): Promise<{ removed: string[]; reclaimedBytes: number }> {
    await this.sweep();
    const usage = await this.usage();
    const removed: string[] = [];
    let reclaimedBytes = 0;
    for (const v of await this.list()) {
      if (usage.get(v.name)?.length) continue;
      if (!opts.all && !v.anonymous) continue;
      if (opts.only && !opts.only(v)) continue;
      const size = await treeSize(v.mountpoint);
      await this.discard(v.name);
      removed.push(v.name);
      reclaimedBytes += size;
    }
    return { removed, reclaimedBytes };
  }

  /** Volume name → IDs of the containers whose records mount it. */
  async usage(): Promise<Map<string, string[]>> {
    const containers = join(this.storeRoot, 'containers');
    const users = new Map<string, string[]>();
    for (const id of await namesIn(containers)) {
      let record: { id?: string; mounts?: Array<{ type?: string; source?: string }> };
      try {
        record = JSON.parse(await fsp.readFile(join(containers, id, 'container.json'), 'utf8')) as typeof record;
      } catch {
        continue;
      }
      for (const m of record.mounts ?? []) {
        if (m.type !== 'volume' || !m.source) continue;
        const list = users.get(m.source) ?? [];
        if (!list.includes(record.id ?? id)) list.push(record.id ?? id);
        users.set(m.source, list);
      }
    }
    return users;
  }

  /** Deletes what processes that died left half made (`.tmp-…`) or half removed (`.rm-…`). */
  async sweep(): Promise<void> {
    let names: string[];
    try {
      names = await fsp.readdir(this.dir);
    } catch {
      return;
    }
    for (const name of names) {
      const m = /^\.(?:tmp|rm)-(.*)$/.exec(name);
      const owner = m ? parseOwnerTag(m[1]!) : undefined;
      if (owner && !isAlive(owner)) await removeTree(join(this.dir, name));
    }
  }

  /** Takes the volume out of sight by rename, then deletes it. */
  private async discard(name: string): Promise<void> {
    const trash = join(this.dir, `.rm-${ownerTag()}-${randomBytes(6).toString('hex')}`);
    try {
      await fsp.rename(join(this.dir, name), trash);
    } catch (err) {
      if (isErrno(err, 'ENOENT')) return;
      throw err;
    }
    await removeTree(trash);
  }

  private info(meta: VolumeMetadata): VolumeInfo {
    return { name: meta.name, mountpoint: this.mountpointOf(meta.name), createdAt: meta.createdAt, labels: meta.labels ?? {}, anonymous: Boolean(meta.anonymous) };
  }
}

function rfc3339(d: Date): string {
  return d.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

function rfc3339Now(): string {
  return rfc3339(new Date());
}

/** Bytes held by regular files under `dir` (links not followed), as `volume prune` reports them. */
async function treeSize(dir: string): Promise<number> {
  let total = 0;
  let names: string[];
  try {
    names = await fsp.readdir(dir);
  } catch {
    return 0;
  }
  for (const name of names) {
    const path = join(dir, name);
    const st = await fsp.lstat(path).catch(() => undefined);
    if (!st) continue;
    if (st.isDirectory()) total += await treeSize(path);
    else if (st.isFile()) total += st.size;
  }
  return total;
}
