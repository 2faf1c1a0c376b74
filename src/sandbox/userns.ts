/**
 * kiln's user namespace. A rootless kiln re-executes itself once into a long-lived user namespace in
 * which it is root: the layer store, layer extraction (chown to image uids, whiteout device nodes),
 * overlay mounts, diffs and garbage collection all happen in there, and every RUN sandbox is a
 * child namespace of it. Real root needs no user namespace.
 *
 * The map: in-namespace root is the user, and 1.. are the user's subordinate ids from /etc/subuid
 * and /etc/subgid, so an image's uid 1000 is some host uid in the user's range.
 *
 * How the namespace is made: `unshare --user --mount` runs a tiny shell that waits on a pipe; the
 * parent writes the maps with newuidmap/newgidmap (setuid helpers from the uidmap package, the
 * only way an unprivileged process may map more than its own id) and then releases the shell, which
 * execs kiln. `unshare --map-auto` (util-linux ≥ 2.38) does the same in one step, but kiln writes the
 * maps itself because that works with every util-linux (older distributions ship 2.37 and earlier),
 * covers the whole range (`--map-auto` maps one id fewer than the range holds, losing 65535) and can
 * use several ranges; it also lets kiln read newuidmap's own refusal and put it in the error.
 *
 * Without newuidmap or a subordinate range, kiln falls back to `unshare --map-root-user`: root maps to
 * the user and nothing else exists. Overlay and whiteouts work, but no file can belong to any other
 * uid, so image ownership is "squashed": layers are unpacked owned by root and the real owners are
 * kept in a sidecar (see squash.ts), from which exported layers get their owners back. RUN steps that
 * switch user or chown to another uid cannot work in that mode; kiln says so.
 *
 * The parent stays as a thin shim (a Node process cannot exec): it forwards termination signals and
 * exits with the child's status. The child knows it is inside because its uid_map is no longer the
 * identity; KILN_USERNS records which mapping it got.
 */
import { spawn, spawnSync, type ChildProcess, type StdioOptions } from 'node:child_process';
import { readFileSync, statSync } from 'node:fs';
import { constants as osConstants } from 'node:os';
import type { Duplex } from 'node:stream';
import { UserNamespaceError } from './errors.js';
import { buildMap, currentUserName, mapArgs, readSubIds, type IdMapEntry, type SubRange } from './idmap.js';
import { currentNamespace, type NamespaceInfo } from './namespace.js';
import { findExecutable, hostTools } from './tools.js';

/** Set in kiln's namespace: `full` or `single` (the mapping it was given). */
export const USERNS_ENV = 'KILN_USERNS';

/** Subordinate ids kiln asks for: uid 65534 (nobody) must be mappable. */
export const WANTED_SUBIDS = 65536;

export { currentNamespace, type NamespaceInfo } from './namespace.js';

export interface NamespacePlan {
  mapping: 'full' | 'single';
  user: { name: string; uid: number; gid: number };
  uidMap: IdMapEntry[];
  gidMap: IdMapEntry[];
  subuid: SubRange[];
  subgid: SubRange[];
  newuidmap?: string;
  newgidmap?: string;
  /** For `single`: what is missing, one sentence. */
  reason?: string;
  /** For `single`: the commands that fix it. */
  fix?: string[];
}

/** Why user namespaces cannot be created at all, with the fix; undefined when they can. */
export function userNamespaceBlocker(): { reason: string; fix: string } | undefined {
  const read = (p: string) => {
    try {
      return readFileSync(p, 'utf8').trim();
    } catch {
      return undefined;
    }
  };
  const max = read('/proc/sys/user/max_user_namespaces');
  if (max === '0') return { reason: 'user namespaces are disabled (user.max_user_namespaces = 0)', fix: 'sysctl -w user.max_user_namespaces=15000' };
  if (read('/proc/sys/kernel/unprivileged_userns_clone') === '0') {
    return { reason: 'unprivileged user namespaces are disabled (kernel.unprivileged_userns_clone = 0)', fix: 'sysctl -w kernel.unprivileged_userns_clone=1' };
  }
  if (read('/proc/sys/kernel/apparmor_restrict_unprivileged_userns') === '1') {
    return {
      reason: 'AppArmor restricts unprivileged user namespaces (kernel.apparmor_restrict_unprivileged_userns = 1)',
      fix: 'sysctl -w kernel.apparmor_restrict_unprivileged_userns=0 (or add an AppArmor profile for node that allows userns)',
    };
  }
  if (max === undefined) return { reason: 'this kernel has no user namespaces (/proc/sys/user/max_user_namespaces is missing)', fix: 'use a kernel built with CONFIG_USER_NS, or run kiln as root' };
  return undefined;
}

/** How a plain user would enter kiln's namespace here. */
export function planNamespace(env: NodeJS.ProcessEnv = process.env): NamespacePlan {
  const uid = process.getuid?.() ?? 0;
  const gid = process.getgid?.() ?? 0;
  const name = currentUserName();
  const subuid = readSubIds('/etc/subuid', { name, id: uid }).ranges;
  const subgid = readSubIds('/etc/subgid', { name, id: uid }).ranges;
  const newuidmap = findExecutable('newuidmap', { env, pathOnly: true });
  const newgidmap = findExecutable('newgidmap', { env, pathOnly: true });
  const base = { user: { name, uid, gid }, subuid, subgid, newuidmap, newgidmap };
  const single = (reason: string, fix: string[]): NamespacePlan => ({
    ...base,
    mapping: 'single',
    uidMap: [{ inside: 0, outside: uid, count: 1 }],
    gidMap: [{ inside: 0, outside: gid, count: 1 }],
    reason,
    fix,
  });
  const rangeFix = (file: string) => `echo "${name}:${suggestStart(file)}:${WANTED_SUBIDS}" >> ${file}   (as root)`;
  if (!newuidmap || !newgidmap) {
    const missing = [!newuidmap && 'newuidmap', !newgidmap && 'newgidmap'].filter(Boolean).join(' and ');
    const fix = ['apt-get install uidmap   (as root; the package is called shadow-utils or shadow on other distributions)'];
    if (sum(subuid) < WANTED_SUBIDS) fix.push(rangeFix('/etc/subuid'));
    if (sum(subgid) < WANTED_SUBIDS) fix.push(rangeFix('/etc/subgid'));
    return single(`${missing} ${missing.includes(' and ') ? 'are' : 'is'} not on PATH`, fix);
  }
  const missing: string[] = [];
  if (sum(subuid) < WANTED_SUBIDS) missing.push('/etc/subuid');
  if (sum(subgid) < WANTED_SUBIDS) missing.push('/etc/subgid');
  if (missing.length) {
    const what = missing.map((f) => (sum(f === '/etc/subuid' ? subuid : subgid) === 0 ? `no line for ${name} in ${f}` : `${f} grants ${name} fewer than ${WANTED_SUBIDS} ids`));
    return single(what.join(' and '), missing.map(rangeFix));
  }
  return { ...base, mapping: 'full', uidMap: buildMap(uid, subuid), gidMap: buildMap(gid, subgid) };
}

function sum(ranges: SubRange[]): number {
  return ranges.reduce((n, r) => n + r.count, 0);
}

/** A start for a new subordinate range that does not overlap the ranges already in `file`. */
function suggestStart(file: string): number {
  let end = 100000;
  try {
    for (const line of readFileSync(file, 'utf8').split('\n')) {
      const [, s, c] = line.split(':');
      const top = Number(s) + Number(c);
      if (Number.isSafeInteger(top) && top > end) end = top;
    }
  } catch {
    // no file yet
  }
  return end;
}

/** The warning printed when kiln runs with the single mapping. */
export function singleMappingWarning(plan: NamespacePlan): string {
  return (
    `kiln: warning: running with a single-uid user namespace because ${plan.reason}: image files keep their ` +
    `owners, but RUN steps cannot switch to another user or chown to one.\n` +
    plan.fix!.map((f) => `  fix: ${f}\n`).join('')
  );
}

export interface SpawnInNamespaceOptions {
  plan: NamespacePlan;
  env?: NodeJS.ProcessEnv;
  /** stdio for the command (fd 3 is used internally and must not be given). Default inherit. */
  stdio?: 'inherit' | 'pipe' | 'ignore' | StdioOptions;
  /** Also unshare a mount namespace (default true). */
  mount?: boolean;
}

/**
 * Runs `argv` as root in a new user namespace made by `plan`, with KILN_USERNS set. Resolves once the
 * maps are written and the command has been released (it may still be running).
 */
export async function spawnInNamespace(command: string[], opts: SpawnInNamespaceOptions): Promise<ChildProcess> {
  let argv = command;
  const { unshare, setpriv } = hostTools();
  const plan = opts.plan;
  // The command dies with the process that started it (the shim kiln leaves outside): without this,
  // killing that shim would leave the real work running unseen.
  argv = [setpriv, '--pdeathsig=SIGTERM', '--', ...argv];
  const env = { ...(opts.env ?? process.env), [USERNS_ENV]: plan.mapping };
  const ns = ['--user', ...(opts.mount === false ? [] : ['--mount', '--propagation', 'private'])];
  const stdio = normaliseStdio(opts.stdio ?? 'inherit');
  if (plan.mapping === 'single') {
    const child = spawn(unshare, [...ns, '--map-root-user', '--', ...argv], { env, stdio });
    await spawned(child);
    return child;
  }
  // The shell says when it runs (unshare has created the namespace by then: writing the maps earlier
  // would hit the parent namespace's and fail with EPERM), then waits until the parent has written
  // them: only then is it root in the namespace, and only a program exec'd after that gets the
  // namespace's capabilities. fd 3 is a socket pair, so one descriptor serves both directions.
  const gate = 'echo ready >&3; IFS= read -r go <&3 && [ "$go" = go ] || exit 125; exec 3<&-; exec "$@"';
  const child = spawn(unshare, [...ns, '--', '/bin/sh', '-c', gate, 'kiln-userns', ...argv], {
    env,
    stdio: [stdio[0], stdio[1], stdio[2], 'pipe'],
  });
  await spawned(child);
  const gatePipe = child.stdio[3] as Duplex;
  try {
    await readyLine(gatePipe, child);
    writeMap(plan.newuidmap!, child.pid!, plan.uidMap, 'uid');
    writeMap(plan.newgidmap!, child.pid!, plan.gidMap, 'gid');
  } catch (err) {
    gatePipe.destroy();
    child.kill('SIGKILL');
    throw err;
  }
  gatePipe.end('go\n');
  return child;
}

/** Resolves when the gate shell has written its first line; rejects if it exits first. */
function readyLine(pipe: Duplex, child: ChildProcess): Promise<void> {
  return new Promise((resolve, reject) => {
    let seen = '';
    const cleanup = () => {
      pipe.off('data', onData);
      child.off('exit', onExit);
    };
    const onData = (d: Buffer) => {
      seen += d.toString();
      if (seen.includes('\n')) {
        cleanup();
        resolve();
      }
    };
    const onExit = (code: number | null, signal: NodeJS.Signals | null) => {
      cleanup();
      reject(new UserNamespaceError(`unshare --user exited (${code ?? signal}) before the namespace was ready`, { hint: 'run `kiln doctor`' }));
    };
    pipe.on('data', onData);
    child.once('exit', onExit);
  });
}

type StdioEntry = Exclude<StdioOptions, string>[number];

function normaliseStdio(stdio: SpawnInNamespaceOptions['stdio']): [StdioEntry, StdioEntry, StdioEntry] {
  if (typeof stdio === 'string') return [stdio, stdio, stdio];
  const arr = (stdio ?? []) as StdioEntry[];
  return [arr[0] ?? 'inherit', arr[1] ?? 'inherit', arr[2] ?? 'inherit'];
}

function spawned(child: ChildProcess): Promise<void> {
  return new Promise((resolve, reject) => {
    child.once('spawn', () => resolve());
    child.once('error', (err) => reject(new UserNamespaceError(`cannot start unshare: ${err.message}`, { cause: err })));
  });
}

function writeMap(tool: string, pid: number, map: IdMapEntry[], kind: 'uid' | 'gid'): void {
  const r = spawnSync(tool, [String(pid), ...mapArgs(map)], { encoding: 'utf8' });
  if (r.status === 0) return;
  const detail = (r.stderr || r.error?.message || `exit status ${r.status}`).trim().replace(/^new[ug]idmap: /, '');
  throw new UserNamespaceError(`${tool} refused the ${kind} map: ${detail}`, {
    hint: `check the ${kind === 'uid' ? '/etc/subuid' : '/etc/subgid'} line for this user and that ${tool} is setuid root (ls -l ${tool})`,
  });
}

export interface EnsureNamespaceOptions {
  /** Where warnings go (default: stderr). */
  warn?: (message: string) => void;
  /** Called with the child's exit status (default: process.exit). */
  exit?: (code: number) => void;
  env?: NodeJS.ProcessEnv;
}

/**
 * For commands that touch the store: returns at once as root (real or in a namespace); as a plain
 * user, runs `argv` (default: this very kiln invocation) inside kiln's user namespace, waits for it,
 * and exits with its status, so the caller never continues outside.
 */
export async function ensureNamespace(argv: string[] = selfArgv(), opts: EnsureNamespaceOptions = {}): Promise<NamespaceInfo> {
  const current = currentNamespace();
  if (current) return current;
  const code = await runInNamespace(argv, opts);
  (opts.exit ?? ((c: number) => process.exit(c)))(code);
  // Only reached with a custom `exit` that returns: nothing more may run outside the namespace.
  return new Promise<NamespaceInfo>(() => undefined);
}

/** This process's own command line, to run it again. */
export function selfArgv(): string[] {
  return [process.execPath, ...process.execArgv, ...process.argv.slice(1)];
}

/**
 * Runs `argv` inside kiln's user namespace with inherited stdio and returns its exit status
 * (128 + signal number when it was killed). Used by ensureNamespace and `kiln unshare`.
 */
export async function runInNamespace(argv: string[], opts: EnsureNamespaceOptions = {}): Promise<number> {
  const blocker = userNamespaceBlocker();
  if (blocker) throw new UserNamespaceError(`cannot run rootless: ${blocker.reason}`, { hint: `as root: ${blocker.fix}; or run kiln as root` });
  const warn = opts.warn ?? ((m: string) => process.stderr.write(m));
  let plan = planNamespace(opts.env ?? process.env);
  if (plan.mapping === 'single') warn(singleMappingWarning(plan));
  let child: ChildProcess;
  try {
    child = await spawnInNamespace(argv, { plan, env: opts.env ?? process.env });
  } catch (err) {
    if (!(err instanceof UserNamespaceError) || plan.mapping === 'single') throw err;
    // newuidmap refused the range (e.g. /etc/subuid edited but not for this uid): still usable, squashed.
    plan = { ...plan, mapping: 'single', reason: err.message, fix: [err.hint ?? 'fix /etc/subuid and /etc/subgid'] };
    plan.uidMap = [{ inside: 0, outside: plan.user.uid, count: 1 }];
    plan.gidMap = [{ inside: 0, outside: plan.user.gid, count: 1 }];
    warn(singleMappingWarning(plan));
    child = await spawnInNamespace(argv, { plan, env: opts.env ?? process.env });
  }
  return waitForwardingSignals(child);
}

const FORWARDED: NodeJS.Signals[] = ['SIGTERM', 'SIGHUP', 'SIGQUIT', 'SIGUSR1', 'SIGUSR2', 'SIGINT'];

/** Waits for the child, passing termination signals on to it; answers its exit status. */
function waitForwardingSignals(child: ChildProcess): Promise<number> {
  const handlers = new Map<NodeJS.Signals, () => void>();
  for (const sig of FORWARDED) {
    const h = () => {
      // Ctrl-C on a terminal reaches the whole foreground process group, the child included;
      // forwarding it as well would deliver it twice.
      if (sig === 'SIGINT' && process.stdin.isTTY) return;
      child.kill(sig);
    };
    handlers.set(sig, h);
    process.on(sig, h);
  }
  return new Promise((resolve) => {
    child.once('exit', (code, signal) => {
      for (const [sig, h] of handlers) process.off(sig, h);
      resolve(code ?? 128 + signalNumber(signal));
    });
  });
}

function signalNumber(signal: NodeJS.Signals | null): number {
  return signal ? (osConstants.signals[signal] ?? 0) : 0;
}

/** True when `path` is setuid root (how Debian's uidmap ships newuidmap). */
export function isSetuidRoot(path: string): boolean {
  try {
    const st = statSync(path);
    return st.uid === 0 && (st.mode & 0o4000) !== 0;
  } catch {
    return false;
  }
}
