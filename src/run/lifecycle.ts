/**
 * A container's life: create (the record, its volumes), start (a detached monitor process, or the
 * caller itself in the foreground), stop (StopSignal, then SIGKILL after the timeout), kill, remove.
 *
 * Signals go straight to the container's PID 1 from the caller. That also works for a rootless
 * container from a plain user's shell: the user owns kiln's user namespace and so may signal any
 * process in it.
 */
import { spawn } from 'node:child_process';
import { openSync, closeSync } from 'node:fs';
import { constants as osConstants } from 'node:os';
import { KilnError, UsageError } from '../errors.js';
import type { ImageConfig } from '../oci/types.js';
import { isAlive } from '../store/owner.js';
import { ContainerConflictError, ContainerStore, isRunning, type ContainerMount, type ContainerRecord, type HostConfig, type PortMappingRecord } from './containers.js';
import { ContainerStartError, removeContainerFiles } from './monitor.js';
import { imageVolumes, parseMounts, processConfig, type ContainerFlags } from './spec.js';

export interface CreateInput {
  storeRoot: string;
  /** The image as named by the user, and what the store resolved it to. */
  imageRef: string;
  imageDigest: ContainerRecord['imageDigest'];
  imageId: ContainerRecord['imageId'];
  imageConfig: ImageConfig;
  command: string[];
  flags: ContainerFlags;
}

/** Makes the container record (and its volumes); nothing runs yet. */
export async function createContainer(input: CreateInput): Promise<{ record: ContainerRecord; warnings: string[] }> {
  const { flags } = input;
  const warnings: string[] = [];
  const net = await import('../sandbox/network.js');
  let network = net.parseNetworkMode(flags.network);
  const publish: PortMappingRecord[] = flags.publish.flatMap((p) => net.parsePublish(p));
  if (network === undefined) network = (await net.probePrivateNetwork()).available ? 'private' : 'host';
  if (publish.length && network !== 'private') {
    if (flags.network === undefined) {
      throw new ContainerStartError('publishing ports (-p) needs the private network, which is not available here', { hint: 'kiln doctor says why; with --network host the container uses the host\'s ports directly' });
    }
    warnings.push(`Published ports are discarded when using ${network} network mode`);
    publish.length = 0;
  }
  const userMounts = parseMounts(flags);
  const mounts: ContainerMount[] = [...userMounts, ...imageVolumes(input.imageConfig, userMounts)];
  const hostConfig: HostConfig = { autoRemove: Boolean(flags.rm), readOnly: Boolean(flags.readOnly), init: Boolean(flags.init), network, publish };
  const containers = ContainerStore.open(input.storeRoot);
  const record = await containers.create((id, name) => {
    const hostname = flags.hostname ?? id.slice(0, 12);
    return {
      id,
      name,
      created: new Date().toISOString(),
      image: input.imageRef,
      imageDigest: input.imageDigest,
      imageId: input.imageId,
      config: processConfig(flags, input.imageConfig, input.command, hostname),
      hostConfig,
      mounts,
      state: { status: 'created' },
    };
  }, flags.name);
  // Volumes exist from creation on (docker makes them then too); anonymous ones get their name now.
  if (mounts.some((m) => m.type === 'volume')) {
    try {
      const { VolumeStore } = await import('./volumes.js');
      const volumes = VolumeStore.open(input.storeRoot);
      for (const m of record.mounts) {
        if (m.type !== 'volume') continue;
        if (m.anonymous) m.source = (await volumes.create(undefined, { anonymous: true })).name;
        else await volumes.ensure(m.source!);
      }
      await containers.write(record);
    } catch (err) {
      await removeContainerFiles(input.storeRoot, record.id, true).catch(() => undefined);
      throw err;
    }
  }
  return { record, warnings };
}

/**
 * Starts the container under a detached monitor process and returns once its command runs (or
 * throws what kept it from running). The monitor stays after kiln exits.
 */
export async function startDetached(storeRoot: string, rec: ContainerRecord): Promise<void> {
  if (isRunning(rec)) return;
  const containers = ContainerStore.open(storeRoot);
  const debug = openSync(containers.pathOf(rec.id, 'monitor.log'), 'a');
  let child;
  try {
    // This kiln's own entry (bin/kiln.js) runs the hidden monitor command.
    child = spawn(process.execPath, [...process.execArgv, process.argv[1]!, 'container-monitor', storeRoot, rec.id], {
      detached: true,
      stdio: ['ignore', debug, debug, 'pipe'],
      env: process.env,
    });
  } finally {
    closeSync(debug);
  }
  const report = child.stdio[3]!;
  const line = await new Promise<string>((resolve) => {
    let text = '';
    report.on('data', (d: Buffer) => {
      text += d.toString('utf8');
      if (text.includes('\n')) resolve(text.slice(0, text.indexOf('\n')));
    });
    report.on('close', () => resolve(text || 'error the monitor exited before the container started'));
    child.once('error', (err) => resolve(`error ${err.message}`));
  });
  report.destroy();
  child.unref();
  if (line === 'ok') return;
  const m = /^error(?: (\d+))? ?(.*)$/s.exec(line);
  throw new ContainerStartError(m?.[2] || line, { exitCode: m?.[1] ? Number(m[1]) : 125 });
}

/** Waits until the container's record no longer says running (the monitor wrote its exit). */
export async function waitForExit(storeRoot: string, id: string, timeoutMs = Infinity): Promise<ContainerRecord | undefined> {
  const containers = ContainerStore.open(storeRoot);
  const until = Date.now() + timeoutMs;
  for (;;) {
    const rec = await containers.read(id);
    if (!rec || rec.state.status !== 'running') return rec;
    if (Date.now() >= until) return rec;
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Signal name or number (`KILL`, `SIGKILL`, `9`) to a signal Node knows. */
export function parseSignal(value: string): NodeJS.Signals {
  const v = value.trim().toUpperCase();
  if (/^\d+$/.test(v)) {
    const n = Number(v);
    const found = Object.entries(osConstants.signals).find(([, num]) => num === n);
    if (found) return found[0] as NodeJS.Signals;
  } else {
    const name = v.startsWith('SIG') ? v : `SIG${v}`;
    if (name in osConstants.signals) return name as NodeJS.Signals;
  }
  throw new UsageError(`invalid signal: ${value}`);
}

/** Sends `signal` to the container's PID 1 (checking its start time, so a reused pid is never hit). */
export function signalContainer(rec: ContainerRecord, signal: NodeJS.Signals): void {
  if (!isRunning(rec)) throw new ContainerConflictError(`cannot kill container: ${rec.name}: container ${rec.id} is not running`);
  const { pid, pidStart, helperPid, helperStart } = rec.state;
  if (pid === undefined || !isAlive({ pid, start: pidStart })) return;
  // SIGKILL goes to the helper: its death takes PID 1 with it, and the monitor sees a SIGKILL (137).
  const target = signal === 'SIGKILL' && helperPid !== undefined && isAlive({ pid: helperPid, start: helperStart }) ? helperPid : pid;
  try {
    process.kill(target, signal);
  } catch (err) {
    throw new KilnError('CONTAINER_SIGNAL', `cannot signal container ${rec.name}: ${(err as Error).message}`);
  }
}

/** docker stop: StopSignal, up to `timeoutSec` seconds for the container to exit, then SIGKILL. */
export async function stopContainer(storeRoot: string, rec: ContainerRecord, timeoutSec?: number): Promise<void> {
  if (!isRunning(rec)) return;
  const seconds = timeoutSec ?? rec.config.stopTimeout ?? 10;
  let signal: NodeJS.Signals = 'SIGTERM';
  try {
    signal = parseSignal(rec.config.stopSignal || 'SIGTERM');
  } catch {
    // an image's odd StopSignal: docker falls back to SIGTERM too
  }
  if (seconds !== 0) signalContainer(rec, signal);
  const after = await waitForExit(storeRoot, rec.id, seconds < 0 ? Infinity : seconds * 1000);
  if (after && isRunning(after)) {
    signalContainer(after, 'SIGKILL');
    await waitForExit(storeRoot, rec.id, 30_000);
  }
}

/** docker rm: refuses a running container unless `force` (then kills it first). */
export async function removeContainer(storeRoot: string, rec: ContainerRecord, opts: { force?: boolean; volumes?: boolean }): Promise<void> {
  if (isRunning(rec)) {
    if (!opts.force) {
      throw new ContainerConflictError(
        `cannot remove container "/${rec.name}": container is running: stop the container before removing or force remove`,
        'kiln stop it first, or kiln rm -f',
      );
    }
    signalContainer(rec, 'SIGKILL');
    await waitForExit(storeRoot, rec.id, 30_000);
  }
  await removeContainerFiles(storeRoot, rec.id, Boolean(opts.volumes));
}
