/**
 * The monitor of one container start: it owns the sandbox process for its whole life, writes its
 * output to the container's log (and, attached, to kiln's own stdout/stderr), records the state
 * (running with its pid, then exited with its status) and cleans up after it.
 *
 * A foreground `kiln run` is the monitor itself, so the container's exit status becomes kiln's and
 * SIGINT/SIGTERM reach the container's PID 1. A detached container (`run -d`, `start`) gets a monitor
 * process of its own (monitor-main.ts), in its own session, which outlives the kiln that started it;
 * the sandbox dies with its monitor (parent-death signal), so a container never runs unsupervised.
 */
import { promises as fsp, readdirSync, readFileSync } from 'node:fs';
import { constants as osConstants } from 'node:os';
import { join } from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { KilnError } from '../errors.js';
import type { LayerStack } from '../sandbox/layers.js';
import type { Store } from '../store/store.js';
import { processStartTime, currentOwner } from '../store/owner.js';
import { removeTree } from '../store/snapshots.js';
import { ContainerStore, claimStart, type ContainerMount, type ContainerRecord } from './containers.js';
import { LogWriter } from './logs.js';

export interface Attachment {
  /** The caller's terminal is handed over as the container's stdin (with -it on a terminal). */
  stdinInherit?: boolean;
  stdin?: Readable;
  stdout?: Writable;
  stderr?: Writable;
  /** Forward SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1/2 to the container's PID 1. */
  forwardSignals?: boolean;
}

export class ContainerStartError extends KilnError {
  constructor(message: string, options: { hint?: string; exitCode?: number } = {}) {
    super('CONTAINER_START', message, { exitCode: options.exitCode ?? 125, ...(options.hint ? { hint: options.hint } : {}) });
  }
}

const FORWARDED: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT', 'SIGUSR1', 'SIGUSR2'];

/**
 * Starts the container and supervises it until it exits; answers its exit status. `onStarted` is
 * called once the command runs (or with the error that kept it from running).
 */
export async function superviseContainer(store: Store, rec: ContainerRecord, attach: Attachment, onStarted?: (err?: KilnError) => void): Promise<number> {
  const containers = ContainerStore.open(store.root);
  const { currentNamespace } = await import('../sandbox/userns.js');
  const { launchContainer, findInit } = await import('../sandbox/container.js');
  const { chooseSnapshotter } = await import('../sandbox/snapshotter.js');
  const ns = currentNamespace();
  if (!ns) throw new ContainerStartError('containers need root or kiln\'s user namespace');
  const dir = containers.pathOf(rec.id);
  const scratch = join(dir, 'run');
  // One monitor at a time: a second start would run a second sandbox on the same read-write layer.
  const releaseStart = await claimStart(containers, rec.id);
  rec = (await containers.read(rec.id)) ?? rec;
  await removeTree(scratch).catch(() => undefined);

  let launched: Awaited<ReturnType<typeof launchContainer>> | undefined;
  let network: import('../sandbox/network.js').NetworkAttachment | undefined;
  const logs = new LogWriter(join(dir, 'container.log'));
  const handlers = new Map<NodeJS.Signals, () => void>();
  try {
    const image = await store.resolve(rec.imageDigest);
    const lower = await store.lowerDirs(image);
    const copyTree = join(dir, 'rootfs');
    // Never `volatile`: the upper dir is the container's data, and overlay refuses to mount a
    // volatile work dir a second time.
    const choice = hasEntries(copyTree) ? { kind: 'copy' as const, volatile: false, reason: 'requested' } : { ...(await chooseSnapshotter(store.tmpDir)), volatile: false };
    let init: string | undefined;
    if (rec.hostConfig.init) {
      init = findInit();
      if (!init) throw new ContainerStartError('--init needs tini: /usr/bin/tini-static was not found', { hint: 'install the Debian package tini (apt-get install tini)' });
    }
    const mounts = await resolveMounts(store.root, rec.mounts);
    const netMode = rec.hostConfig.network;
    if (netMode === 'private') {
      const probe = await (await import('../sandbox/network.js')).probePrivateNetwork();
      if (!probe.available) throw new ContainerStartError(`the private network is not available here: ${probe.reason ?? 'neither pasta nor slirp4netns can run'}`, { hint: 'use --network host or --network none (kiln doctor shows what works)' });
    }
    launched = await launchContainer({
      storeRoot: store.root,
      lower,
      upper: join(dir, 'upper'),
      work: join(dir, 'work'),
      rootfsDir: copyTree,
      choice,
      scratch,
      command: [rec.config.path, ...rec.config.args],
      env: rec.config.env,
      user: rec.config.user,
      cwd: rec.config.workingDir,
      hostname: rec.config.hostname,
      network: netMode,
      mounts,
      readOnly: rec.hostConfig.readOnly,
      ...(init ? { init } : {}),
      tty: rec.config.tty,
      stdin: attach.stdinInherit ? 'inherit' : attach.stdin && rec.config.openStdin ? 'pipe' : 'ignore',
      ns,
      onLowerStack: (stack) => populateVolumes(stack, mounts, rec.mounts),
    });
    for (const w of launched.warnings) process.stderr.write(`kiln: warning: ${w}\n`);
    const pid = launched.pid;
    if (attach.forwardSignals) {
      for (const sig of FORWARDED) {
        const h = () => {
          try {
            process.kill(pid, sig);
          } catch {
            // gone already
          }
        };
        handlers.set(sig, h);
        process.on(sig, h);
      }
    }
    if (attach.stdinInherit && rec.config.tty) {
      // The terminal's size changes reach kiln (its foreground process); the relay that owns the
      // container's terminal is in a session of its own and copies the new size over when told.
      const resize = () => launched?.child.kill('SIGWINCH');
      handlers.set('SIGWINCH', resize);
      process.on('SIGWINCH', resize);
    }
    if (netMode === 'private') {
      const net = await (await import('../sandbox/network.js')).attachPrivateNetwork({ pid }, { publish: rec.hostConfig.publish, detached: false });
      network = net;
      launched.setResolvConf(net.dns.map((d) => `nameserver ${d}\n`).join(''));
    }
    launched.release();
    const stdout = launched.stdout;
    const stderr = launched.stderr;
    stdout.on('data', (d: Buffer) => {
      logs.write('stdout', d);
      attach.stdout?.write(d);
    });
    stderr?.on('data', (d: Buffer) => {
      logs.write('stderr', d);
      attach.stderr?.write(d);
    });
    if (attach.stdin && launched.stdin) {
      launched.stdin.on('error', () => undefined);
      attach.stdin.pipe(launched.stdin);
    }
    const failure = await launched.started;
    if (failure) {
      launched.child.kill('SIGKILL');
      await launched.exited.catch(() => undefined);
      // The first error is the cause; what follows it in mount's output are its consequences.
      const lines = failure.split('; ');
      throw new ContainerStartError(`cannot start container ${rec.name}: ${lines.length > 2 ? `${lines[0]}; ${lines[lines.length - 1]}` : failure}`);
    }
    const monitor = currentOwner();
    const helper = parentOf(pid);
    await containers.update(rec.id, (r) => {
      r.state = {
        status: 'running',
        pid,
        ...(processStartTime(pid) ? { pidStart: processStartTime(pid)! } : {}),
        ...(helper !== undefined ? { helperPid: helper, ...(processStartTime(helper) ? { helperStart: processStartTime(helper)! } : {}) } : {}),
        monitorPid: monitor.pid,
        ...(monitor.start ? { monitorStart: monitor.start } : {}),
        startedAt: new Date().toISOString(),
        ...(network ? { address: network.address, ports: network.ports.map(({ hostIp, hostPort, containerPort, protocol }) => ({ ...(hostIp ? { hostIp } : {}), hostPort, containerPort, protocol })) } : {}),
      };
    });
    onStarted?.();
    const { code, signal } = await launched.exited;
    const exitCode = code ?? 128 + signalNumber(signal);
    await containers.update(rec.id, (r) => {
      r.state = { ...r.state, status: 'exited', exitCode, finishedAt: new Date().toISOString() };
      for (const key of ['pid', 'pidStart', 'helperPid', 'helperStart'] as const) delete r.state[key];
    });
    return exitCode;
  } catch (err) {
    const error = err instanceof KilnError ? err : new ContainerStartError(`cannot start container ${rec.name}: ${(err as Error).message}`);
    await containers
      .update(rec.id, (r) => {
        // A container that never ran stays `created` (as docker shows a failed start); one that ran has exited.
        r.state = { ...r.state, status: r.state.status === 'running' ? 'exited' : r.state.status, exitCode: error.exitCode, error: error.message, finishedAt: new Date().toISOString() };
        for (const key of ['pid', 'pidStart', 'helperPid', 'helperStart'] as const) delete r.state[key];
      })
      .catch(() => undefined);
    onStarted?.(error);
    throw error;
  } finally {
    for (const [sig, h] of handlers) process.off(sig, h);
    launched?.child.kill('SIGKILL');
    try {
      launched?.cleanup();
    } catch {
      // stubs are cosmetic
    }
    await network?.close().catch(() => undefined);
    await logs.close();
    await removeTree(scratch).catch(() => undefined);
    await releaseStart().catch(() => undefined);
    if (rec.hostConfig.autoRemove) await removeContainerFiles(store.root, rec.id, true).catch(() => undefined);
  }
}

/** Volumes as bind sources (named ones made when missing); binds and tmpfs as they are. */
async function resolveMounts(storeRoot: string, mounts: ContainerMount[]) {
  const volumes = mounts.some((m) => m.type === 'volume') ? (await import('./volumes.js')).VolumeStore.open(storeRoot) : undefined;
  const out: Array<{ type: 'bind'; source: string; destination: string; readOnly: boolean } | { type: 'tmpfs'; destination: string; readOnly: boolean; options?: string[] }> = [];
  for (const m of mounts) {
    if (m.type === 'tmpfs') out.push({ type: 'tmpfs', destination: m.destination, readOnly: m.readOnly, ...(m.options ? { options: m.options } : {}) });
    else if (m.type === 'bind') out.push({ type: 'bind', source: m.source!, destination: m.destination, readOnly: m.readOnly });
    else out.push({ type: 'bind', source: (await volumes!.ensure(m.source!)).mountpoint, destination: m.destination, readOnly: m.readOnly });
  }
  return out;
}

/**
 * An empty volume mounted where the image has content gets a copy of it first, as docker does
 * (so an image's VOLUME /data keeps its files in the new anonymous volume).
 */
async function populateVolumes(stack: LayerStack, mounts: Array<{ type: string; destination: string; source?: string }>, records: ContainerMount[]): Promise<void> {
  const { applyLayers } = await import('../sandbox/snapshotter.js');
  for (const [i, m] of mounts.entries()) {
    if (records[i]?.type !== 'volume' || m.type !== 'bind' || !m.source) continue;
    if (hasEntries(m.source)) continue;
    let resolved;
    try {
      resolved = stack.resolve(m.destination);
    } catch {
      continue;
    }
    if (!resolved.found?.stat.isDirectory()) continue;
    const layers = stack.layers.map((l) => join(l, ...resolved.components)).filter((p) => isDirectory(p));
    if (!layers.length) continue;
    // Apply into a fresh directory, then move the entries into the volume (which must stay the same directory).
    const tmp = `${m.source}.populate`;
    await fsp.rm(tmp, { recursive: true, force: true });
    applyLayers(layers, tmp);
    for (const name of readdirSync(tmp)) await fsp.rename(join(tmp, name), join(m.source, name));
    const st = await fsp.lstat(tmp);
    await fsp.chown(m.source, st.uid, st.gid).catch(() => undefined);
    await fsp.chmod(m.source, st.mode & 0o7777).catch(() => undefined);
    await fsp.rm(tmp, { recursive: true, force: true });
  }
}

function hasEntries(dir: string): boolean {
  try {
    return readdirSync(dir).length > 0;
  } catch {
    return false;
  }
}

function isDirectory(path: string): boolean {
  try {
    return readdirSync(path) !== undefined;
  } catch {
    return false;
  }
}

/** Deletes a container's directory and, with `volumes`, its anonymous volumes. */
export async function removeContainerFiles(storeRoot: string, id: string, volumes: boolean): Promise<void> {
  const containers = ContainerStore.open(storeRoot);
  const rec = await containers.read(id);
  await removeTree(containers.pathOf(id));
  // The name goes only once the directory has: until then the container still holds it.
  const names = containers.names;
  for (const name of rec ? [rec.name] : await names.heldBy(id)) await names.release(name, id);
  if (!volumes || !rec) return;
  const anonymous = rec.mounts.filter((m) => m.type === 'volume' && m.anonymous && m.source);
  if (!anonymous.length) return;
  const { VolumeStore } = await import('./volumes.js');
  const store = VolumeStore.open(storeRoot);
  for (const m of anonymous) await store.remove(m.source!).catch(() => undefined);
}

function parentOf(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
  } catch {
    return undefined;
  }
}

function signalNumber(signal: NodeJS.Signals | null): number {
  return signal ? (osConstants.signals[signal] ?? 0) : 0;
}
