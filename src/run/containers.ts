/**
 * Containers as objects in the store: each one is a directory
 *
 *   <store>/containers/<id>/container.json   configuration and state
 *   <store>/containers/<id>/upper, work      its read-write layer (overlay upper and work dirs)
 *   <store>/containers/<id>/rootfs           its whole tree instead, where overlay is unavailable
 *   <store>/containers/<id>/run/             scaffolding of the current start (fstab, /dev, etc)
 *   <store>/containers/<id>/container.log    its output, one JSON object per chunk (logs.ts)
 *
 * The state a record holds is what its monitor (monitor.ts) last wrote. A record that says
 * `running` while its monitor process is gone (pid and start time no longer match) is shown as
 * exited: the container died with it (the sandbox is tied to the monitor by a parent-death signal).
 * Records are replaced by rename, so readers never see half a file.
 */
import { randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import { join } from 'node:path';
import { KilnError } from '../errors.js';
import type { Digest } from '../oci/digest.js';
import { writeFileAtomic } from '../oci/layout/fs.js';
import { isAlive, ownerTag } from '../store/owner.js';
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

  /** Reserves a new container: a fresh ID and the name (random when not given), checked to be unique. */
  async create(fill: (id: string, name: string) => ContainerRecord, name?: string): Promise<ContainerRecord> {
    await fsp.mkdir(this.dir, { recursive: true, mode: 0o700 });
    const all = await this.list();
    if (name !== undefined) {
      const bare = name.startsWith('/') ? name.slice(1) : name;
      if (!VALID_NAME.test(bare)) throw new KilnError('USAGE', `Invalid container name (${name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed`);
      const holder = all.find((c) => c.name === bare);
      if (holder) {
        throw new ContainerConflictError(
          `Conflict. The container name "/${bare}" is already in use by container "${holder.id}". You have to remove (or rename) that container to be able to reuse that name.`,
        );
      }
      name = bare;
    }
    const taken = new Set(all.map((c) => c.name));
    const id = randomBytes(32).toString('hex');
    const rec = fill(id, name ?? randomName((n) => taken.has(n)));
    await fsp.mkdir(this.pathOf(id), { mode: 0o700 });
    await this.write(rec);
    return rec;
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
