/**
 * Containers as objects in the store: each one is a directory
 *
 *   <store>/containers/<id>/container.json   configuration and state
 *   <store>/containers/<id>/upper, work      its read-write layer (overlay upper and work dirs)
 *   <store>/containers/<id>/rootfs           its whole tree instead, where overlay is unavailable
 *   <store>/containers/<id>/run/             scaffolding of the current start (fstab, /dev, etc)
 *   <store>/containers/<id>/container.log    its output, one JSON object per chunk (logs.ts)
 *   <store>/containers/<id>/monitor          the process supervising its current start (claimStart)
 *   <store>/container-names/<name>           the ID of the container that holds the name
 *
 * A name is claimed by creating its file with link(2), which fails when the file exists: of two
 * processes creating containers of one name at the same instant, exactly one gets it. The claim is
 * made after the container's directory and released after that directory is gone; a claim whose
 * container directory no longer exists (its remover died in between) is stale and may be taken
 * over, under a lock that release takes too, so a live claim is never removed by someone else.
 *
 * The state a record holds is what its monitor (monitor.ts) last wrote. A record that says
 * `running` while its monitor process is gone (pid and start time no longer match) is shown as
 * exited: the container died with it (the sandbox is tied to the monitor by a parent-death signal).
 * Records are replaced by rename, so readers never see half a file.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, promises as fsp } from 'node:fs';
import { join } from 'node:path';
import { KilnError } from '../errors.js';
import type { Digest } from '../oci/digest.js';
import { isErrno, writeFileAtomic } from '../oci/layout/fs.js';
import { StoreLock } from '../store/lock.js';
import { isAlive, ownerTag, parseOwnerTag } from '../store/owner.js';
import { VALID_NAME, randomName } from './names.js';

export interface ContainerMount {
  type: 'volume' | 'bind' | 'tmpfs';
  /** Volume name or host path. */
  source?: string;
  destination: string;
  readOnly: boolean;
  /** A volume made for an image VOLUME without `-v` (removed with the container under --rm / rm -v). */
  anonymous?: boolean;
  /** tmpfs options (size=, mode=). */
  options?: string[];
}

export interface PortMappingRecord {
  hostIp?: string;
  hostPort: number;
  containerPort: number;
  protocol: 'tcp' | 'udp';
}

export interface ContainerConfig {
  /** The effective argv (entrypoint + cmd). */
  path: string;
  args: string[];
  entrypoint: string[];
  cmd: string[];
  /** The environment as given (image Env, then -e / --env-file). */
  env: string[];
  user: string;
  workingDir: string;
  hostname: string;
  tty: boolean;
  openStdin: boolean;
  stopSignal: string;
  stopTimeout?: number;
  labels?: Record<string, string>;
}

export interface HostConfig {
  autoRemove: boolean;
  readOnly: boolean;
  init: boolean;
  network: 'host' | 'none' | 'private';
  publish: PortMappingRecord[];
}

export type ContainerStatus = 'created' | 'running' | 'exited';

export interface ContainerState {
  status: ContainerStatus;
  /** Host pid of the container's PID 1 and its start time (so a reused pid is not mistaken for it). */
  pid?: number;
  pidStart?: string;
  /**
   * The sandbox helper (unshare) whose child PID 1 is: SIGKILL goes to it, and its parent-death
   * signal takes PID 1 down (unshare misreports a child killed by SIGKILL as exit status 1).
   */
  helperPid?: number;
  helperStart?: string;
  /** The process supervising it (kiln in the foreground, or the detached monitor). */
  monitorPid?: number;
  monitorStart?: string;
  exitCode?: number;
  /** Why it could not start, or how it ended when kiln had to guess. */
  error?: string;
  startedAt?: string;
  finishedAt?: string;
  /** Network address on a private network. */
  address?: string;
  /** Published ports as bound on the host (a port left to kiln has its chosen number here). */
  ports?: PortMappingRecord[];
}

export interface ContainerRecord {
  id: string;
  name: string;
  created: string;
  /** The image as the user named it. */
  image: string;
  /** Manifest digest (what the store keeps alive for the container) and image ID (config digest). */
  imageDigest: Digest;
  imageId: Digest;
  config: ContainerConfig;
  hostConfig: HostConfig;
  mounts: ContainerMount[];
  state: ContainerState;
}

export class NoSuchContainerError extends KilnError {
  constructor(ref: string) {
    super('CONTAINER_NOT_FOUND', `No such container: ${ref}`);
  }
}

export class ContainerConflictError extends KilnError {
  constructor(message: string, hint?: string) {
    super('CONTAINER_CONFLICT', message, hint ? { hint } : {});
  }
}

export function containersDir(storeRoot: string): string {
  return join(storeRoot, 'containers');
}

export class ContainerStore {
  readonly dir: string;

  constructor(readonly storeRoot: string) {
    this.dir = containersDir(storeRoot);
  }

  static open(storeRoot: string): ContainerStore {
    return new ContainerStore(storeRoot);
  }

  pathOf(id: string, ...rest: string[]): string {
    return join(this.dir, id, ...rest);
  }

  async list(): Promise<ContainerRecord[]> {
    let names: string[];
    try {
      names = await fsp.readdir(this.dir);
    } catch {
      return [];
    }
    const out: ContainerRecord[] = [];
    for (const name of names) {
      const rec = await this.read(name);
      if (rec) out.push(rec);
    }
    return out.sort((a, b) => b.created.localeCompare(a.created));
  }

  async read(id: string): Promise<ContainerRecord | undefined> {
    try {
      return observed(JSON.parse(await fsp.readFile(this.pathOf(id, 'container.json'), 'utf8')) as ContainerRecord);
    } catch {
      return undefined;
    }
  }

  /** A container by full or unique-prefix ID, or by name (docker's lookup order). */
  async find(ref: string): Promise<ContainerRecord> {
    const all = await this.list();
    const wanted = ref.startsWith('/') ? ref.slice(1) : ref;
    const exact = all.find((c) => c.id === wanted) ?? all.find((c) => c.name === wanted);
    if (exact) return exact;
    if (/^[a-f0-9]+$/.test(wanted)) {
      const matches = all.filter((c) => c.id.startsWith(wanted));
      if (matches.length === 1) return matches[0]!;
      if (matches.length > 1) throw new ContainerConflictError(`multiple containers found with provided prefix: ${wanted}`);
    }
    throw new NoSuchContainerError(ref);
  }

  /**
   * Reserves a new container: a fresh ID and the name (random when not given), claimed atomically
   * so that no two containers ever hold one name.
   */
  async create(fill: (id: string, name: string) => ContainerRecord, name?: string): Promise<ContainerRecord> {
    await fsp.mkdir(this.dir, { recursive: true, mode: 0o700 });
    let bare: string | undefined;
    if (name !== undefined) {
      bare = name.startsWith('/') ? name.slice(1) : name;
      if (!VALID_NAME.test(bare)) throw new KilnError('USAGE', `Invalid container name (${name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed`);
    }
    const all = await this.list();
    // Containers made before names were claimed have no claim file: their records still count.
    const holder = bare !== undefined ? all.find((c) => c.name === bare) : undefined;
    if (holder) throw nameInUse(bare!, holder.id);
    const id = randomBytes(32).toString('hex');
    // The directory first: a claim whose directory is missing is known to be stale.
    await fsp.mkdir(this.pathOf(id), { mode: 0o700 });
    try {
      if (bare !== undefined) await this.names.claim(bare, id);
      else {
        const taken = new Set(all.map((c) => c.name));
        for (;;) {
          bare = randomName((n) => taken.has(n));
          try {
            await this.names.claim(bare, id);
            break;
          } catch (err) {
            if (!(err instanceof ContainerConflictError)) throw err;
            taken.add(bare);
          }
        }
      }
      const rec = fill(id, bare);
      await this.write(rec);
      return rec;
    } catch (err) {
      await fsp.rm(this.pathOf(id), { recursive: true, force: true });
      if (bare !== undefined) await this.names.release(bare, id).catch(() => undefined);
      throw err;
    }
  }

  /** The names held by containers (see the module comment). */
  get names(): ContainerNames {
    return new ContainerNames(join(this.storeRoot, 'container-names'), this.dir);
  }

  async write(rec: ContainerRecord): Promise<void> {
    await writeFileAtomic(this.pathOf(rec.id, 'container.json'), `${JSON.stringify(rec, null, 2)}\n`, { tmpDir: this.pathOf(rec.id), tempPrefix: ownerTag() });
  }

  /** Re-reads the record, applies `change` and writes it back. */
  async update(id: string, change: (rec: ContainerRecord) => void): Promise<ContainerRecord> {
    const rec = await this.read(id);
    if (!rec) throw new NoSuchContainerError(id);
    change(rec);
    await this.write(rec);
    return rec;
  }
}

function nameInUse(name: string, holder: string): ContainerConflictError {
  return new ContainerConflictError(
    `Conflict. The container name "/${name}" is already in use by container "${holder}". You have to remove (or rename) that container to be able to reuse that name.`,
  );
}

/** `<store>/container-names/<name>` files holding the ID of the container with that name. */
export class ContainerNames {
  constructor(
    readonly dir: string,
    private readonly containersDir: string,
  ) {}

  /** Claims `name` for container `id`, or throws docker's conflict naming the holder. */
  async claim(name: string, id: string): Promise<void> {
    await fsp.mkdir(this.dir, { recursive: true, mode: 0o700 });
    const path = join(this.dir, name);
    // The claim appears with its content at once: written beside it, then linked into place.
    const tmp = join(this.dir, `.tmp-${ownerTag()}-${randomBytes(6).toString('hex')}`);
    await fsp.writeFile(tmp, `${id}\n`, { mode: 0o600 });
    try {
      for (let attempt = 0; ; attempt++) {
        try {
          await fsp.link(tmp, path);
          return;
        } catch (err) {
          if (!isErrno(err, 'EEXIST')) throw err;
        }
        const holder = await this.holder(name);
        if (holder === id) return;
        if (holder === undefined) continue;
        if (attempt > 0 || existsSync(join(this.containersDir, holder))) throw nameInUse(name, holder);
        await this.locked(async () => {
          if ((await this.holder(name)) === holder && !existsSync(join(this.containersDir, holder))) await fsp.rm(path, { force: true });
        });
      }
    } finally {
      await fsp.rm(tmp, { force: true });
    }
  }

  /** The ID holding `name`, or undefined. */
  async holder(name: string): Promise<string | undefined> {
    try {
      return (await fsp.readFile(join(this.dir, name), 'utf8')).trim() || undefined;
    } catch (err) {
      if (isErrno(err, 'ENOENT')) return undefined;
      throw err;
    }
  }

  /** Gives `name` up if container `id` holds it. */
  async release(name: string, id: string): Promise<void> {
    if ((await this.holder(name)) !== id) return;
    await this.locked(async () => {
      if ((await this.holder(name)) === id) await fsp.rm(join(this.dir, name), { force: true });
    });
  }

  /** The names container `id` holds (normally one; scanned when its record is gone). */
  async heldBy(id: string): Promise<string[]> {
    const names = await fsp.readdir(this.dir).catch(() => [] as string[]);
    const out: string[] = [];
    for (const name of names) if (!name.startsWith('.') && (await this.holder(name).catch(() => undefined)) === id) out.push(name);
    return out;
  }

  private async locked(fn: () => Promise<void>): Promise<void> {
    const lockRoot = join(this.dir, '.lock');
    await fsp.mkdir(lockRoot, { recursive: true, mode: 0o700 });
    await new StoreLock(lockRoot, { timeoutMs: 60_000 }).run(fn);
  }
}

/** The container runs already, under another monitor: starting it again does nothing. */
export class ContainerAlreadyRunningError extends KilnError {
  constructor(readonly id: string) {
    super('CONTAINER_RUNNING', `container ${id} is already running`);
  }
}

/**
 * Makes the calling process the one monitor of the container's next start:
 * `containers/<id>/monitor` names it (pid and start time), created with link(2) so that of two
 * `kiln start` at one instant only one proceeds. A monitor still finishing the previous run (its
 * cleanup after the exit) is waited for; a claim whose process is gone is taken over (under a lock,
 * so two takers cannot both win). Answers the release, to call once the start's cleanup is done.
 */
export async function claimStart(containers: ContainerStore, id: string, waitMs = 30_000): Promise<() => Promise<void>> {
  const path = containers.pathOf(id, 'monitor');
  const mine = ownerTag();
  const tmp = containers.pathOf(id, `.monitor-${mine}-${randomBytes(6).toString('hex')}`);
  await fsp.writeFile(tmp, `${mine}\n`, { mode: 0o600 });
  const release = async () => {
    const held = await fsp.readFile(path, 'utf8').catch(() => '');
    if (held.trim() === mine) await fsp.rm(path, { force: true });
  };
  const until = Date.now() + waitMs;
  try {
    for (;;) {
      try {
        await fsp.link(tmp, path);
        return release;
      } catch (err) {
        if (!isErrno(err, 'EEXIST')) throw err;
      }
      const held = (await fsp.readFile(path, 'utf8').catch(() => '')).trim();
      if (held === mine) return release;
      const owner = parseOwnerTag(`${held}-`);
      if (owner && isAlive(owner)) {
        if ((await containers.read(id))?.state.status === 'running') throw new ContainerAlreadyRunningError(id);
        if (Date.now() >= until) throw new ContainerConflictError(`container ${id} is being started or stopped by process ${owner.pid}`);
        await new Promise((r) => setTimeout(r, 50));
        continue;
      }
      const lockRoot = containers.pathOf(id, '.lock');
      await fsp.mkdir(lockRoot, { recursive: true, mode: 0o700 });
      await new StoreLock(lockRoot, { timeoutMs: 60_000 }).run(async () => {
        if ((await fsp.readFile(path, 'utf8').catch(() => '')).trim() === held) await fsp.rm(path, { force: true });
      });
    }
  } finally {
    await fsp.rm(tmp, { force: true });
  }
}

/** The record with its state checked against the processes: a running container whose monitor is gone has exited. */
function observed(rec: ContainerRecord): ContainerRecord {
  const s = rec.state;
  if (s.status === 'running' && s.monitorPid !== undefined && !isAlive({ pid: s.monitorPid, start: s.monitorStart })) {
    rec.state = { ...s, status: 'exited', exitCode: s.exitCode ?? 137, error: s.error ?? 'its monitor process ended', finishedAt: s.finishedAt ?? s.startedAt };
  }
  return rec;
}

export function isRunning(rec: ContainerRecord): boolean {
  return rec.state.status === 'running';
}

export function shortContainerId(id: string): string {
  return id.slice(0, 12);
}
