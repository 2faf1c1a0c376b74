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
import { promises as fsp, lstatSync, mkdirSync, readFileSync, symlinkSync, writeFileSync, chmodSync, lchownSync } from 'node:fs';
import { join, relative } from 'node:path';
import type { Readable, Writable } from 'node:stream';
import type { NetworkMode } from '../dockerfile/instructions/mounts.js';
import { tempName } from '../oci/layout/fs.js';
import type { Lease } from '../store/leases.js';
import { ownerTag } from '../store/owner.js';
import type { Snapshot } from '../store/snapshots.js';
import type { Store } from '../store/store.js';
import { commitCopy, commitUpper, type CommittedLayer } from './diff.js';
import { RunAbortedError, RunFailedError, RunUserError, SandboxError } from './errors.js';
import { formatFstab, type FstabEntry } from './fstab.js';
import { isMapped } from './idmap.js';
import { LayerStack, UpperPreparer, copyMetadata } from './layers.js';
import { prepareLimits, type AppliedLimits, type ResourceLimits } from './limits.js';
import { isLoaderVariable, prepareMounts, type RunMount, type SecretSource } from './mounts.js';
import { Redactor, TailBuffer, emit, type OutputSink } from './output.js';
import { scratchBase } from './scratch.js';
import { launchViaSpawner, type HelperHandle } from './spawner.js';
import { SANDBOX_SCRIPT } from './script.js';
import { applyLayers, chooseSnapshotter, removeAsRoot, type SnapshotterKind } from './snapshotter.js';
import { restoreOwnersTransform } from './squash.js';
import { SANDBOX_TOOLS_DIR, hostTools, prepareToolsDir } from './tools.js';
import { currentNamespace, type NamespaceInfo } from './userns.js';
import { resolveUser, type ExecUser } from './users.js';

/** Docker's default capability set for containers (moby oci/caps/defaults.go). */
export const DEFAULT_CAPABILITIES = [
  'chown',
  'dac_override',
  'fsetid',
  'fowner',
  'mknod',
  'net_raw',
  'setgid',
  'setuid',
  'setfcap',
  'setpcap',
  'net_bind_service',
  'sys_chroot',
  'kill',
  'audit_write',
];

export const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
export const DEFAULT_HOSTNAME = 'kiln';

/** Paths Docker masks in /proc (bound over with /dev/null, or an empty read-only tmpfs for directories). */
const PROC_MASKED = ['acpi', 'asound', 'interrupts', 'kcore', 'keys', 'latency_stats', 'timer_list', 'timer_stats', 'sched_debug', 'scsi'];
/** Paths Docker makes read-only in /proc. */
const PROC_READONLY = ['bus', 'fs', 'irq', 'sys', 'sysrq-trigger'];
const DEVICES = ['null', 'zero', 'full', 'random', 'urandom', 'tty'];

/** The rootfs below the step: `store.lowerDirs(image)` or `lowerDirsFor(store, diffIDs)`. */
export interface LowerLayers {
  /** Overlay lowerdirs relative to the store root, topmost first. */
  lowerdirs: string[];
  /** The same directories as absolute paths. */
  absolute: string[];
}

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
    const overlayOption = (volatile: boolean) =>
      [`lowerdir=${opts.lower.lowerdirs.join(':')}`, `upperdir=${storePath(store.root, upper)}`, `workdir=${storePath(store.root, work)}`, 'userxattr', ...(volatile ? ['volatile'] : [])];
    if (choice.kind === 'overlay' && opts.lower.lowerdirs.length > 0 && overlayOption(choice.volatile).join(',').length > 4095) {
      warnings.push(`overlay: ${opts.lower.lowerdirs.length} layers do not fit in one mount; this step copies the layers instead`);
      choice = { kind: 'copy', volatile: false, reason: 'too many layers' };
    }
    let stack: LayerStack;
    let rootEntry: FstabEntry;
    let rootfs: string | undefined;
    if (choice.kind === 'overlay' && opts.lower.lowerdirs.length > 0) {
      if (opts.upperdir) mkdirSync(upper, { recursive: true });
      if (opts.workdir) mkdirSync(work, { recursive: true });
      // The merged root directory takes the upper dir's metadata: give it the image's.
      const top = opts.lower.absolute[0]!;
      copyMetadata(top, upper, lstatSync(top));
      stack = new LayerStack([upper, ...opts.lower.absolute]);
      rootEntry = { source: 'overlay', target: rootMount, type: 'overlay', options: overlayOption(choice.volatile) };
    } else {
      // copy: also the way for an image without layers (FROM scratch), which overlay cannot mount.
      if (choice.kind === 'overlay') choice = { kind: 'copy', volatile: false, reason: 'no layers' };
      rootfs = join(runDir, 'rootfs');
      applyLayers(opts.lower.absolute, rootfs);
      stack = new LayerStack([rootfs]);
      rootEntry = { source: rootfs, target: rootMount, type: 'none', options: ['bind'] };
    }
    if (choice.kind === 'copy' && choice.reason && choice.reason !== 'requested' && choice.reason !== 'no layers') {
      warnings.push(`overlay unavailable (${choice.reason}); using the copy snapshotter`);
    }
    const preparer = new UpperPreparer(stack);

    // ------------------------------------------------------------------ user, environment, cwd
    const user = resolveUser(opts.user, stack.readFile('/etc/passwd')?.toString('utf8'), stack.readFile('/etc/group')?.toString('utf8'));
    checkUser(user, ns, opts.user);
    const env = buildEnv(opts.env ?? [], user);
    const cwd = opts.cwd && opts.cwd !== '' ? (opts.cwd.startsWith('/') ? opts.cwd : `/${opts.cwd}`) : '/';
    const cwdResolved = stack.resolve(cwd);
    if (!cwdResolved.found) preparer.ensureDir(cwdResolved.components, false);
    else if (!cwdResolved.found.stat.isDirectory()) throw new SandboxError(`the working directory ${cwd} is not a directory in the image`);

    // ------------------------------------------------------------------ system mounts
    preparer.ensureDir(['proc'], true);
    preparer.ensureDir(['dev'], true);
    const fstab: FstabEntry[] = [rootEntry, { source: 'proc', target: join(rootMount, 'proc'), type: 'proc', options: ['nosuid', 'nodev', 'noexec'] }];
    for (const { name, dir } of procPaths().masked) {
      fstab.push(
        dir
          ? { source: 'tmpfs', target: join(rootMount, 'proc', name), type: 'tmpfs', options: ['ro', 'nosuid', 'nodev', 'noexec', 'size=0'] }
          : { source: '/dev/null', target: join(rootMount, 'proc', name), type: 'none', options: ['bind'] },
      );
    }
    for (const name of procPaths().readonly) {
      const p = join(rootMount, 'proc', name);
      fstab.push({ source: p, target: p, type: 'none', options: ['bind', 'ro'] });
    }
    const devDir = join(scratch, 'dev');
    makeDevSkeleton(devDir);
    fstab.push({ source: devDir, target: join(rootMount, 'dev'), type: 'none', options: ['bind', 'nosuid'] });
    for (const d of DEVICES) fstab.push({ source: `/dev/${d}`, target: join(rootMount, 'dev', d), type: 'none', options: ['bind'] });
    const ttyGid = ns.mapping === 'single' || (ns.mode === 'rootless' && !isMapped(ns.gidMap, 5)) ? [] : ['gid=5'];
    fstab.push({ source: 'devpts', target: join(rootMount, 'dev', 'pts'), type: 'devpts', options: ['newinstance', 'ptmxmode=0666', 'mode=0620', ...ttyGid, 'nosuid', 'noexec'] });
    fstab.push({ source: 'shm', target: join(rootMount, 'dev', 'shm'), type: 'tmpfs', options: ['nosuid', 'nodev', 'noexec', 'mode=1777', 'size=65536k'] });
    fstab.push({ source: toolsDir.dir, target: join(rootMount, SANDBOX_TOOLS_DIR), type: 'none', options: ['bind', 'ro'] });
    if (network === 'none') {
      // sysfs can only be mounted with a network namespace of one's own (it shows the namespace's devices).
      preparer.ensureDir(['sys'], true);
      fstab.push({ source: 'sysfs', target: join(rootMount, 'sys'), type: 'sysfs', options: ['ro', 'nosuid', 'nodev', 'noexec'] });
    }
    const etcDir = join(scratch, 'etc');
    mkdirSync(etcDir);
    writeFileSync(join(etcDir, 'resolv.conf'), hostResolvConf());
    writeFileSync(join(etcDir, 'hosts'), hostsFile(hostname, opts.extraHosts ?? []));
    for (const file of ['resolv.conf', 'hosts']) {
      const target = bindableFile(stack, `/etc/${file}`);
      if (!target) {
        warnings.push(`/etc/${file} in the image is not a regular file; not replaced`);
        continue;
      }
      preparer.ensureFile(target);
      fstab.push({ source: join(etcDir, file), target: join(rootMount, ...target), type: 'none', options: ['bind'] });
    }

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
    const setpriv = [
      ...toolsDir.argv('setpriv'),
      '--nnp',
      `--bounding-set=-all,${DEFAULT_CAPABILITIES.map((c) => `+${c}`).join(',')}`,
      '--inh-caps=-all',
      `--regid=${user.gid}`,
      ns.mapping === 'single' ? '--keep-groups' : user.groups.length ? `--groups=${user.groups.join(',')}` : '--clear-groups',
      `--reuid=${user.uid}`,
      // Changing uid clears the parent-death signal unshare --kill-child set; set it again.
      '--pdeathsig=SIGKILL',
      '--',
    ];
    // With variables the loader acts on, the environment is applied by env(1) after setpriv has
    // dropped privileges, so an image's LD_PRELOAD never runs inside a privileged process.
    const final = unsafeEnv ? [...setpriv, ...toolsDir.argv('env'), ...env, ...opts.command] : [...setpriv, ...opts.command];
    let hostnameProgram = '';
    if (ns.mode === 'rootless') {
      if (tools.hostname) hostnameProgram = tools.hostname;
      else warnings.push('hostname(1) is not installed; the sandbox keeps the host name');
    }
    let ip = '';
    if (network === 'none') {
      if (tools.ip) ip = tools.ip;
      else warnings.push('ip(8) is not installed; lo stays down with --network=none');
    }
    const args = [
      store.root,
      scratch,
      tools.mount,
      ns.mode === 'rootless' && !hostnameProgram ? '' : hostname,
      hostnameProgram,
      ip,
      tools.pivotRoot,
      limits.procs.join(':'),
      limits.ulimit,
      cwd,
      toolsDir.argv('umount').join(' '),
      ...mounts.words,
      '--',
      ...(unsafeEnv ? [] : env),
      '--',
      ...final,
    ];
    const unshareArgs = ['--mount', '--pid', '--fork', '--uts', '--ipc', ...(network === 'none' ? ['--net'] : []), '--kill-child', '--', tools.sh, '-c', SANDBOX_SCRIPT, 'kiln-sandbox', ...args];

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

/** A path for overlay options: relative to the store root when inside it (short), else absolute. */
function storePath(storeRoot: string, path: string): string {
  const rel = relative(storeRoot, path);
  return rel.startsWith('..') ? path.replace(/[\\:,]/g, (c) => `\\${c}`) : rel;
}

let procCache: { masked: Array<{ name: string; dir: boolean }>; readonly: string[] } | undefined;

/** Which of Docker's masked and read-only /proc paths this kernel has (the same in every PID namespace). */
function procPaths(): NonNullable<typeof procCache> {
  if (!procCache) {
    procCache = { masked: [], readonly: [] };
    for (const name of PROC_MASKED) {
      const st = lstatSync(`/proc/${name}`, { throwIfNoEntry: false });
      if (st) procCache.masked.push({ name, dir: st.isDirectory() });
    }
    for (const name of PROC_READONLY) if (lstatSync(`/proc/${name}`, { throwIfNoEntry: false })) procCache.readonly.push(name);
  }
  return procCache;
}

function checkUser(user: ExecUser, ns: NamespaceInfo, spec: string | undefined): void {
  if (ns.mode === 'root') return;
  if (ns.mapping === 'single') {
    if (user.uid !== 0 || user.gid !== 0) {
      throw new RunUserError(`USER ${spec} (uid ${user.uid}, gid ${user.gid}) cannot run: kiln's user namespace maps only root`, {
        hint: 'install uidmap and give the user a range in /etc/subuid and /etc/subgid (kiln doctor shows how)',
      });
    }
    return;
  }
  if (!isMapped(ns.uidMap, user.uid)) throw new RunUserError(`USER ${spec}: uid ${user.uid} is outside kiln's user namespace`, { hint: 'widen the user\'s range in /etc/subuid' });
  if (!isMapped(ns.gidMap, user.gid)) throw new RunUserError(`USER ${spec}: gid ${user.gid} is outside kiln's user namespace`, { hint: 'widen the user\'s range in /etc/subgid' });
  user.groups = user.groups.filter((g) => isMapped(ns.gidMap, g));
}

function buildEnv(env: string[], user: ExecUser): string[] {
  const out: string[] = [];
  const seen = new Set<string>();
  for (const e of env) {
    const eq = e.indexOf('=');
    if (eq <= 0) continue;
    const name = e.slice(0, eq);
    if (!/^[^=\0]+$/.test(name)) continue;
    // Later entries win, as in Docker.
    if (seen.has(name)) out.splice(out.findIndex((x) => x.startsWith(`${name}=`)), 1);
    seen.add(name);
    out.push(e);
  }
  if (!seen.has('PATH')) out.push(`PATH=${DEFAULT_PATH}`);
  if (!seen.has('HOME')) out.push(`HOME=${user.home}`);
  return out;
}

/** The file a bind onto `path` would cover, or undefined when it is not a file kiln may replace. */
function bindableFile(stack: LayerStack, path: string): string[] | undefined {
  try {
    const r = stack.resolve(path);
    if (r.found && !r.found.stat.isFile()) return undefined;
    return r.components;
  } catch {
    return undefined;
  }
}

function hostResolvConf(): string {
  try {
    return readFileSync('/etc/resolv.conf', 'utf8');
  } catch {
    return '';
  }
}

function hostsFile(hostname: string, extra: string[]): string {
  const lines = [`127.0.0.1\tlocalhost ${hostname}`, '::1\tlocalhost ip6-localhost ip6-loopback'];
  for (const e of extra) {
    const i = e.indexOf(':');
    if (i > 0) lines.push(`${e.slice(i + 1)}\t${e.slice(0, i)}`);
  }
  return `${lines.join('\n')}\n`;
}

/** /dev as Docker lays it out; device files are empty here and bind-mounted from the host's. */
function makeDevSkeleton(dir: string): void {
  mkdirSync(dir);
  chmodSync(dir, 0o755);
  for (const d of DEVICES) writeFileSync(join(dir, d), '');
  // pipes: the mount point of a RUN heredoc script with a `#!` line (BuildKit runs it from /dev/pipes).
  for (const d of ['pts', 'shm', 'pipes', SANDBOX_TOOLS_DIR.slice('/dev/'.length)]) mkdirSync(join(dir, d));
  symlinkSync('/proc/self/fd', join(dir, 'fd'));
  symlinkSync('/proc/self/fd/0', join(dir, 'stdin'));
  symlinkSync('/proc/self/fd/1', join(dir, 'stdout'));
  symlinkSync('/proc/self/fd/2', join(dir, 'stderr'));
  symlinkSync('pts/ptmx', join(dir, 'ptmx'));
  lchownSync(dir, 0, 0);
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
