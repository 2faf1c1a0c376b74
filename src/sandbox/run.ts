/**
 * One RUN step: a command in fresh namespaces over an image's layers, its changes committed as a
 * layer.
 *
 * The sandbox is one helper process, `unshare --mount --pid --fork --uts --ipc [--net] --kill-child`
 * running the fixed script of script.ts, spawned by a kiln that is already root (real root, or root
 * in its user namespace, see userns.ts). Every mount (the overlay included) lives in the helper's
 * own mount namespace, so when its PID 1 exits the kernel unmounts everything: nothing to clean up in
 * kiln's namespace, even after a crash. kiln prepares everything that needs no privilege in Node
 * first (upper dir, mount points, the fstab, resolv.conf and hosts, /dev skeleton), which keeps the
 * helper down to a handful of program starts: each costs milliseconds, the mounts themselves are
 * nearly free. The helper is started by a small long-lived shell rather than by kiln itself, because
 * forking kiln costs more the bigger kiln grows (spawner.ts).
 *
 * Cancellation (AbortSignal; abortOnSignals wires Ctrl-C and SIGTERM to one): kiln SIGKILLs the
 * helper, `--kill-child` takes the namespace's PID 1 with it, and the kernel kills the rest of the PID
 * namespace and drops its mounts. The step's directories are then removed; nothing reached the
 * store's content. The helper runs under `setpriv --pdeathsig SIGKILL` and the spawner kills its
 * process group when kiln goes away, so a sandbox dies with kiln even if kiln is killed outright.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { promises as fsp, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Readable, Writable } from 'node:stream';
import type { NetworkMode } from '../dockerfile/instructions/mounts.js';
import { tempName } from '../oci/layout/fs.js';
import type { Lease } from '../store/leases.js';
import { ownerTag } from '../store/owner.js';
import type { Snapshot } from '../store/snapshots.js';
import type { Store } from '../store/store.js';
import { commitCopy, commitUpper, type CommittedLayer } from './diff.js';
import { RunAbortedError, RunFailedError, SandboxError } from './errors.js';
import { formatFstab, type FstabEntry } from './fstab.js';
import { LayerStack, UpperPreparer } from './layers.js';
import { prepareLimits, type AppliedLimits, type ResourceLimits } from './limits.js';
import { isLoaderVariable, prepareMounts, type RunMount, type SecretSource } from './mounts.js';
import { Redactor, TailBuffer, emit, type OutputSink } from './output.js';
import { etcFiles, prepareRootFs, privilegeDropArgv, resolveProcess, sandboxArgv, systemMounts, type LowerLayers } from './prepare.js';
import { scratchBase } from './scratch.js';
import { launchViaSpawner, type HelperHandle } from './spawner.js';
import { chooseSnapshotter, removeAsRoot, type SnapshotterKind } from './snapshotter.js';
import { restoreOwnersTransform } from './squash.js';
import { hostTools, prepareToolsDir } from './tools.js';
import { currentNamespace, type NamespaceInfo } from './userns.js';

export { DEFAULT_CAPABILITIES, DEFAULT_PATH, type LowerLayers } from './prepare.js';
export const DEFAULT_HOSTNAME = 'kiln';

export interface RunStepOptions {
  store: Store;
  lower: LowerLayers;
  /** argv; a shell-form RUN is `['/bin/sh', '-c', script]`. */
  command: string[];
  /** `NAME=value` entries (the image's and the build's); PATH defaults to Docker's, HOME to the user's. */
  env?: string[];
  /** USER: `name`, `uid`, `name:group`, `uid:gid`, resolved in the image's /etc/passwd and /etc/group. */
  user?: string;
  /** WORKDIR (created when missing, as BuildKit does); default `/`. */
  cwd?: string;
  /** `default` is host networking (rootless kiln has no other network); `none` leaves only lo. */
  network?: NetworkMode;
  mounts?: RunMount[];
  /** Secret values by id, for `--mount=type=secret`. */
  secrets?: Record<string, SecretSource>;
  hostname?: string;
  /** Extra /etc/hosts lines, `host:ip` as in `--add-host`. */
  extraHosts?: string[];
  stdout?: OutputSink;
  stderr?: OutputSink;
  signal?: AbortSignal;
  limits?: ResourceLimits;
  /** `auto` (default, or $KILN_SNAPSHOTTER): overlay when it mounts, else copy. */
  snapshotter?: 'auto' | SnapshotterKind;
  /** Pins the new layer (and its snapshot) for the build. */
  lease?: Lease;
  sourceDateEpoch?: number;
  /** Also unpack the new layer as a snapshot, so the next step can use it as a lowerdir. */
  snapshot?: boolean;
  /** Caller-owned overlay upper and work dirs (kept afterwards); default: fresh ones in the store's temp area. */
  upperdir?: string;
  workdir?: string;
  /** Default: this process's (currentNamespace()). */
  namespace?: NamespaceInfo;
  /** Environment secrets with `{ env: NAME }` sources are read from. Default process.env. */
  secretEnv?: NodeJS.ProcessEnv;
  /** Lines of output kept for the error of a failing step (default 20). */
  tailLines?: number;
  /**
   * Called when the command fails, before its sandbox is taken apart: `openShell()` runs an
   * interactive /bin/sh on kiln's own terminal in the same root file system (the failed command's
   * changes included), mounts, environment, user and working directory, and answers its exit status.
   */
  onFailure?: (openShell: () => Promise<number>) => Promise<void>;
  /** Receives the time spent in each phase (prepare, sandbox, commit, cleanup), for benchmarks. */
  onPhase?: (phase: 'prepare' | 'sandbox' | 'commit' | 'snapshot' | 'cleanup', ms: number) => void;
}

export interface RunStepResult extends CommittedLayer {
  exitCode: 0;
  snapshotter: SnapshotterKind;
  /** Which mechanism enforced each requested limit. */
  limits: AppliedLimits;
  durationMs: number;
  /** Things the build log should mention (fallbacks, skipped mounts). */
  warnings: string[];
  /** With `snapshot: true`. */
  snapshot?: Snapshot;
}

const live = new Set<HelperHandle>();
let exitHookInstalled = false;

function track(handle: HelperHandle): void {
  live.add(handle);
  void handle.exited.finally(() => live.delete(handle));
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    // A kiln exiting with steps still running takes them along (signal handlers of the CLI abort
    // first; this covers process.exit from anywhere).
    process.on('exit', () => {
      for (const h of live) h.kill();
    });
  }
}

/** Kills every sandbox this process is running (for a CLI's second Ctrl-C). */
export function killAllSandboxes(): void {
  for (const h of live) h.kill();
}

/**
 * Wires SIGINT and SIGTERM to cancellation, for a command that runs steps: the first signal aborts
 * `controller` (each runStep then kills its sandbox, cleans up and throws RunAbortedError); a second
 * one kills every sandbox at once and exits with 128 + the signal number. Returns a function that
 * removes the handlers.
 */
export function abortOnSignals(controller: AbortController): () => void {
  const handler = (signal: NodeJS.Signals) => {
    if (!controller.signal.aborted) {
      controller.abort(new Error(`received ${signal}`));
      return;
    }
    killAllSandboxes();
    process.exit(128 + signalNumber(signal));
  };
  process.on('SIGINT', handler);
  process.on('SIGTERM', handler);
  return () => {
    process.off('SIGINT', handler);
    process.off('SIGTERM', handler);
  };
}

export async function runStep(opts: RunStepOptions): Promise<RunStepResult> {
  const started = Date.now();
  let mark = performance.now();
  const phase = (name: Parameters<NonNullable<RunStepOptions['onPhase']>>[0]) => {
    const now = performance.now();
    opts.onPhase?.(name, now - mark);
    mark = now;
  };
  const { store } = opts;
  if (opts.command.length === 0) throw new SandboxError('RUN needs a command');
  const ns = opts.namespace ?? currentNamespace();
  if (!ns) {
    throw new SandboxError('build steps need root or kiln\'s user namespace', {
      hint: 'the command must enter it first (ensureNamespace), or run it under `kiln unshare`',
    });
  }
  if (opts.signal?.aborted) throw new RunAbortedError(opts.command, { cause: opts.signal.reason });
  const warnings: string[] = [];
  const tools = hostTools();
  const toolsDir = await prepareToolsDir(store.root);
  let choice = await chooseSnapshotter(store.tmpDir, opts.snapshotter);
  const network = opts.network ?? 'default';
  const hostname = opts.hostname ?? DEFAULT_HOSTNAME;

  // The upper dir and anything large go to the store's disk; the scaffolding to a tmpfs (scratch.ts).
  const runDir = takeRunDir(store.tmpDir);
  const spawnerBase = await scratchBase();
  const scratch = join(spawnerBase ?? store.tmpDir, tempName(ownerTag(), '.run'));
  let succeeded = false;
  // After a success the step's directory (its upper dir can be large) is removed in the background:
  // it is no longer needed, and if kiln exits first it is swept as a dead process's debris.
  const cleanups: Array<() => Promise<void> | void> = [() => (succeeded ? removeLater(runDir) : removeAsRoot(runDir))];
  if (scratch !== runDir) {
    mkdirSync(scratch, { recursive: true });
    cleanups.push(() => removeAsRoot(scratch));
  }
  let helper: HelperHandle | undefined;
  try {
    const rootMount = join(scratch, 'root');
    mkdirSync(rootMount);

    // ------------------------------------------------------------------ the root file system
    const upper = opts.upperdir ?? join(runDir, 'upper');
    const work = opts.workdir ?? join(runDir, 'work');
    const prepared = prepareRootFs({ storeRoot: store.root, lower: opts.lower, upper, work, choice, rootMount, rootfsDir: join(runDir, 'rootfs'), warnings });
    choice = prepared.choice;
    const { stack, rootfs } = prepared;
    const preparer = new UpperPreparer(stack);

    // ------------------------------------------------------------------ user, environment, cwd
    const { user, env, cwd } = resolveProcess(stack, preparer, ns, { user: opts.user, env: opts.env ?? [], cwd: opts.cwd });

    // ------------------------------------------------------------------ system mounts
    const fstab: FstabEntry[] = [prepared.rootEntry, ...systemMounts({ preparer, rootMount, scratch, ns, toolsDir, ownNetwork: network === 'none' })];
    fstab.push(...etcFiles({ stack, preparer, scratch, rootMount, hostname, extraHosts: opts.extraHosts ?? [], warnings }));

    // ------------------------------------------------------------------ RUN --mount
    const mounts = await prepareMounts({
      mounts: opts.mounts ?? [],
      secrets: opts.secrets ?? {},
      stack,
      preparer,
      rootMount,
      runDir,
      scratchDir: scratch,
      storeRoot: store.root,
      cacheRoot: store.cacheDir,
      workingDir: cwd,
      overlay: choice.kind === 'overlay',
      canChown: ns.mapping !== 'single',
      env: opts.secretEnv ?? process.env,
      ...(opts.signal ? { signal: opts.signal } : {}),
      onWarning: (m) => warnings.push(m),
    });
    cleanups.push(async () => {
      for (const l of mounts.leases) await l.release();
    });
    cleanups.push(() => {
      for (const v of mounts.secretValues) v.fill(0);
    });
    fstab.push(...mounts.fstab);
    writeFileSync(join(scratch, 'fstab'), formatFstab(fstab));
    if (mounts.fstab2.length) writeFileSync(join(scratch, 'fstab2'), formatFstab(mounts.fstab2));
    preparer.finish();

    // ------------------------------------------------------------------ limits and the command
    const limits = await prepareLimits(opts.limits, ownerTag().replace('.', '-'));
    cleanups.push(() => limits.cleanup());
    warnings.push(...limits.applied.notes);

    const unsafeEnv = env.some((e) => isLoaderVariable(e.slice(0, e.indexOf('='))));
    const setpriv = privilegeDropArgv(toolsDir, user, ns);
    // With variables the loader acts on, the environment is applied by env(1) after setpriv has
    // dropped privileges, so an image's LD_PRELOAD never runs inside a privileged process.
    const argvFor = (command: string[], notes: string[]) => sandboxArgv({
      storeRoot: store.root,
      scratch,
      tools,
      toolsDir,
      ns,
      hostname,
      ownNetwork: network === 'none',
      cgroupProcs: limits.procs,
      ulimit: limits.ulimit,
      cwd,
      words: mounts.words,
      env: unsafeEnv ? [] : env,
      final: unsafeEnv ? [...setpriv, ...toolsDir.argv('env'), ...env, ...command] : [...setpriv, ...command],
      warnings: notes,
    });
    const unshareArgs = argvFor(opts.command, warnings);

    opts.signal?.throwIfAborted();
    phase('prepare');
    const outcome = await runHelper({
      argv: [tools.setpriv, '--pdeathsig=SIGKILL', '--', tools.unshare, ...unshareArgs],
      pipes: mounts.pipes,
      secretValues: mounts.secretValues,
      stdout: opts.stdout,
      stderr: opts.stderr,
      signal: opts.signal,
      tailLines: opts.tailLines ?? 20,
      spawnerBase,
      onStart: (h) => {
        helper = h;
        track(h);
      },
    });
    if (outcome.aborted) throw new RunAbortedError(opts.command, { cause: opts.signal?.reason });
    if (!outcome.started) {
      throw new SandboxError(`setting up the sandbox failed: ${outcome.setupError || `helper exited with ${outcome.code ?? outcome.signal}`}`, {
        hint: 'run `kiln doctor` to see what this host supports',
      });
    }
    phase('sandbox');
    if (outcome.code !== 0 && opts.onFailure) {
      // Mount-point stubs stay until the shell is done: its sandbox mounts the same things.
      await opts.onFailure(() =>
        interactiveShell([tools.setpriv, '--pdeathsig=SIGKILL', '--', tools.unshare, ...argvFor(['/bin/sh'], [])], mounts.pipes, work, opts.signal),
      );
    }
    preparer.removeStubs();
    if (outcome.code !== 0) {
      const code = outcome.code ?? 128 + signalNumber(outcome.signal);
      const oom = outcome.signal === 'SIGKILL' && limits.memoryExhausted();
      throw new RunFailedError(opts.command, code, outcome.signal ?? undefined, outcome.tail, oom ? { hint: `the step reached its memory limit (${opts.limits?.memory} bytes)` } : {});
    }

    // ------------------------------------------------------------------ commit
    const commitOpts = {
      store,
      ...(opts.lease ? { lease: opts.lease } : {}),
      ...(opts.sourceDateEpoch !== undefined ? { sourceDateEpoch: opts.sourceDateEpoch } : {}),
      ...(opts.signal ? { signal: opts.signal } : {}),
      ...(ns.squashed ? { transform: (tar: Readable) => restoreOwnersTransform(tar, new LayerStack(opts.lower.absolute)) } : {}),
    };
    const committed = rootfs
      ? await commitCopy(rootfs, new LayerStack(opts.lower.absolute), outcome.startedAt, commitOpts)
      : await commitUpper(upper, commitOpts);
    phase('commit');
    let snapshot: Snapshot | undefined;
    if (opts.snapshot) {
      snapshot = await store.snapshotFor(committed.diffID, () => store.openUncompressed(committed.diffID), opts.lease ? { lease: opts.lease } : {});
      phase('snapshot');
    }
    succeeded = true;
    return {
      ...committed,
      exitCode: 0,
      snapshotter: choice.kind,
      limits: limits.applied,
      durationMs: Date.now() - started,
      warnings,
      ...(snapshot ? { snapshot } : {}),
    };
  } catch (err) {
    // Whatever was interrupted (waiting for a cache lock, the commit), a cancelled step reports as such.
    if (opts.signal?.aborted && !(err instanceof RunAbortedError)) throw new RunAbortedError(opts.command, { cause: err });
    throw err;
  } finally {
    helper?.kill();
    for (const c of cleanups.reverse()) {
      try {
        await c();
      } catch {
        // cleanup is best effort: what is left in tmp/ belongs to this process and is swept when it is gone
      }
    }
    phase('cleanup');
  }
}

/**
 * Step directories in the store's temp area, made ahead of time: creating directories on a busy
 * journaling disk takes milliseconds, so one spare is prepared in the background after each use.
 */
const spareRunDirs = new Map<string, string[]>();
const preparing = new Set<string>();

function takeRunDir(tmpDir: string): string {
  const spare = spareRunDirs.get(tmpDir)?.pop();
  prepareSpare(tmpDir);
  if (spare) return spare;
  const dir = join(tmpDir, tempName(ownerTag(), '.run'));
  mkdirSync(join(dir, 'upper'), { recursive: true });
  mkdirSync(join(dir, 'work'));
  return dir;
}

function prepareSpare(tmpDir: string): void {
  if (preparing.has(tmpDir) || (spareRunDirs.get(tmpDir)?.length ?? 0) > 0) return;
  preparing.add(tmpDir);
  const dir = join(tmpDir, tempName(ownerTag(), '.run'));
  void fsp
    .mkdir(join(dir, 'upper'), { recursive: true })
    .then(() => fsp.mkdir(join(dir, 'work')))
    .then(
      () => {
        const list = spareRunDirs.get(tmpDir) ?? [];
        list.push(dir);
        spareRunDirs.set(tmpDir, list);
      },
      () => undefined,
    )
    .finally(() => preparing.delete(tmpDir));
}

const pendingRemovals = new Set<Promise<void>>();

function removeLater(path: string): void {
  const p = removeAsRoot(path)
    .catch(() => undefined)
    .finally(() => pendingRemovals.delete(p));
  pendingRemovals.add(p);
}

/** Waits for the background removal of finished steps' directories (for tests and benchmarks). */
export async function settleSandboxCleanup(): Promise<void> {
  while (pendingRemovals.size) await Promise.all([...pendingRemovals]);
}

interface HelperOutcome {
  started: boolean;
  startedAt: number;
  setupError: string;
  code: number | null;
  signal: NodeJS.Signals | null;
  tail: string[];
  aborted: boolean;
}

interface HelperOptions {
  argv: string[];
  pipes: Buffer[];
  secretValues: Buffer[];
  stdout: OutputSink | undefined;
  stderr: OutputSink | undefined;
  signal: AbortSignal | undefined;
  tailLines: number;
  /** A tmpfs directory for the spawner's FIFOs; undefined forces a direct spawn. */
  spawnerBase: string | undefined;
  onStart: (handle: HelperHandle) => void;
}

/**
 * Starts the helper through the spawner (spawner.ts), or directly when the step has secrets (their
 * values go through pipes, never files) or there is no tmpfs for the spawner's FIFOs.
 */
function launch(o: HelperOptions): HelperHandle {
  if (o.spawnerBase && o.pipes.length === 0) return launchViaSpawner(o.spawnerBase, o.argv);
  const child = spawn(o.argv[0]!, o.argv.slice(1), {
    // The host tools the script starts before pivot_root (cat, chmod, chown) are found on this PATH;
    // nothing else of kiln's environment reaches the sandbox.
    env: { PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' },
    stdio: ['ignore', 'pipe', 'pipe', 'pipe', ...o.pipes.map(() => 'pipe' as const)],
    // Own process group (and session): Ctrl-C reaches kiln only, and kiln kills the whole group.
    detached: true,
  });
  o.pipes.forEach((value, i) => {
    const pipe = child.stdio[4 + i] as Writable;
    pipe.on('error', () => undefined);
    pipe.end(value);
  });
  let reaped = false;
  child.once('exit', () => (reaped = true));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve, reject) => {
    child.once('error', (err) => reject(new SandboxError(`cannot start the sandbox helper: ${err.message}`, { cause: err })));
    child.once('close', (code, signal) => resolve({ code, signal }));
  });
  exited.catch(() => undefined);
  return {
    stdout: child.stdout!,
    stderr: child.stderr!,
    status: child.stdio[3] as Readable,
    exited,
    // Once reaped, the process group id may be reused: never signal it then.
    kill: () => reaped || killGroup(child),
  };
}

/**
 * Runs a sandbox helper on kiln's terminal (stdin, stdout, stderr inherited) and answers its exit
 * status. The overlay work dir of the failed step is reused: a `volatile` mount leaves a marker
 * that refuses a second mount until it is removed.
 */
async function interactiveShell(argv: string[], pipes: Buffer[], work: string, signal: AbortSignal | undefined): Promise<number> {
  await fsp.rm(join(work, 'work', 'incompat'), { recursive: true, force: true }).catch(() => undefined);
  await fsp.rm(join(work, 'incompat'), { recursive: true, force: true }).catch(() => undefined);
  const child = spawn(argv[0]!, argv.slice(1), {
    env: { PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' },
    stdio: ['inherit', 'inherit', 'inherit', 'pipe', ...pipes.map(() => 'pipe' as const)],
    // Its own session, as every sandbox: Ctrl-C reaches kiln, which cancels the build (and the shell).
    detached: true,
  });
  pipes.forEach((value, i) => {
    const pipe = child.stdio[4 + i] as Writable;
    pipe.on('error', () => undefined);
    pipe.end(value);
  });
  (child.stdio[3] as Readable).resume();
  const onAbort = () => killGroup(child);
  signal?.addEventListener('abort', onAbort, { once: true });
  try {
    return await new Promise<number>((resolve, reject) => {
      child.once('error', (err) => reject(new SandboxError(`cannot start the shell: ${err.message}`, { cause: err })));
      child.once('close', (code, sig) => resolve(code ?? 128 + signalNumber(sig)));
    });
  } finally {
    signal?.removeEventListener('abort', onAbort);
  }
}

async function runHelper(o: HelperOptions): Promise<HelperOutcome> {
  const startedAt = Date.now();
  const handle = launch(o);
  o.onStart(handle);
  const tail = new TailBuffer(o.tailLines);
  let status = '';
  let aborted = false;
  const forward = (stream: Readable, sink: OutputSink | undefined) => {
    const redactor = new Redactor(o.secretValues);
    stream.on('data', (chunk: Buffer) => {
      const clean = redactor.push(chunk);
      tail.push(clean);
      emit(sink, clean);
    });
    stream.on('end', () => {
      const rest = redactor.flush();
      tail.push(rest);
      emit(sink, rest);
    });
  };
  forward(handle.stdout, o.stdout);
  forward(handle.stderr, o.stderr);
  handle.status.on('data', (d: Buffer) => (status += d.toString('utf8')));
  const onAbort = () => {
    aborted = true;
    handle.kill();
  };
  if (o.signal) {
    if (o.signal.aborted) onAbort();
    else o.signal.addEventListener('abort', onAbort, { once: true });
  }
  try {
    const { code, signal } = await handle.exited;
    const lines = status.split('\n').filter(Boolean);
    const started = lines[lines.length - 1] === 'ok';
    return {
      started: started || aborted,
      startedAt,
      setupError: lines.filter((l) => l !== 'ok').join('; '),
      code,
      signal,
      tail: tail.get(),
      aborted,
    };
  } finally {
    o.signal?.removeEventListener('abort', onAbort);
  }
}

function killGroup(child: ChildProcess): void {
  if (child.pid === undefined) return;
  try {
    process.kill(-child.pid, 'SIGKILL');
  } catch {
    try {
      child.kill('SIGKILL');
    } catch {
      // already gone
    }
  }
}

function signalNumber(signal: NodeJS.Signals | null): number {
  const table: Partial<Record<string, number>> = { SIGHUP: 1, SIGINT: 2, SIGQUIT: 3, SIGKILL: 9, SIGSEGV: 11, SIGPIPE: 13, SIGTERM: 15 };
  return signal ? (table[signal] ?? 0) : 0;
}
