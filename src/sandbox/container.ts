/**
 * A container's process: the command of an image in fresh namespaces over the image's layers and
 * the container's own persistent upper dir, with its stdio as pipes (or a pseudo-terminal with
 * `tty`), its mounts (bind, volume, tmpfs, read-only), hostname and network mode.
 *
 * The same helper as a RUN step (prepare.ts, script.ts), with two differences. The upper dir is the
 * container's and stays after the process ends (it is the container's read-write layer). And the
 * helper waits at a gate (fd 4) before it mounts anything: the caller first learns the host pid of
 * the container's PID 1 (to signal it, to attach a private network to its namespaces, to record it)
 * and then opens the gate with `release()`.
 *
 * `tty` runs the helper under util-linux script(1), which allocates a pseudo-terminal, makes it
 * the helper's controlling terminal and relays between it and its own stdin/stdout: with a terminal
 * on stdin it switches that to raw mode and passes window size changes on.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, readlinkSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { SandboxError } from './errors.js';
import { formatFstab, type FstabEntry } from './fstab.js';
import { UpperPreparer, type LayerStack } from './layers.js';
import { isLoaderVariable } from './mounts.js';
import { etcFiles, prepareRootFs, privilegeDropArgv, resolveProcess, sandboxArgv, systemMounts, type LowerLayers, type SnapshotChoice } from './prepare.js';
import { SANDBOX_TOOLS_DIR, findExecutable, hostTools, prepareToolsDir } from './tools.js';
import type { NamespaceInfo } from './userns.js';

export type ContainerNetworkMode = 'host' | 'none' | 'private';

/** A mount as the container sees it; sources are resolved host paths. */
export type ContainerMountSpec =
  | { type: 'bind'; source: string; destination: string; readOnly: boolean }
  | { type: 'tmpfs'; destination: string; readOnly: boolean; options?: string[] };

export interface ContainerLaunchOptions {
  storeRoot: string;
  lower: LowerLayers;
  /** The container's read-write layer and overlay's work dir (kept between starts). */
  upper: string;
  work: string;
  /** The container's full tree when the copy snapshotter is used (kept between starts). */
  rootfsDir: string;
  choice: SnapshotChoice;
  /** Scaffolding of this start (fstab, /dev skeleton, resolv.conf, the root mount point). */
  scratch: string;
  command: string[];
  env: string[];
  user?: string;
  cwd?: string;
  hostname: string;
  network: ContainerNetworkMode;
  mounts: ContainerMountSpec[];
  readOnly?: boolean;
  /** Host path of an init (tini) bound at /dev/init and run as PID 1 around the command. */
  init?: string;
  tty?: boolean;
  /** `inherit` hands the caller's stdin over (a terminal, with tty); `pipe` to write it; `ignore` for /dev/null. */
  stdin: 'inherit' | 'pipe' | 'ignore';
  extraHosts?: string[];
  ns: NamespaceInfo;
  /** Called with the merged view of the image and the upper dir before anything is mounted (volumes are seeded from it). */
  onLowerStack?: (stack: LayerStack) => Promise<void>;
}

export interface LaunchedContainer {
  child: ChildProcess;
  stdin: Writable | null;
  stdout: Readable;
  /** Null with a terminal: it carries both streams on stdout. */
  stderr: Readable | null;
  /** Host pid of the container's PID 1 (found before the gate opens). */
  pid: number;
  /** Writes the container's resolv.conf (before `release`). */
  setResolvConf(text: string): void;
  /** Lets the helper mount and start the command. */
  release(): void;
  /** Resolves with '' once the command runs, or the setup error the helper reported. */
  started: Promise<string>;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** After exit: removes the mount points kiln made in the upper dir that stayed empty. */
  cleanup(): void;
  warnings: string[];
  /** The environment, user and working directory the command got (also what `exec` starts with). */
  process: { env: string[]; uid: number; gid: number; cwd: string };
}

/** The gate: the helper waits on fd 4 until kiln writes a line, before touching anything. */
const GATE = 'IFS= read -r kiln_go <&4 || exit 1\nexec 4<&-\nunset kiln_go';

export async function launchContainer(o: ContainerLaunchOptions): Promise<LaunchedContainer> {
  if (o.command.length === 0) throw new SandboxError('no command specified');
  const tools = hostTools();
  const toolsDir = await prepareToolsDir(o.storeRoot);
  const warnings: string[] = [];
  const ownNetwork = o.network !== 'host';
  mkdirSync(o.scratch, { recursive: true });
  const rootMount = join(o.scratch, 'root');
  mkdirSync(rootMount, { recursive: true });

  const root = prepareRootFs({
    storeRoot: o.storeRoot,
    lower: o.lower,
    upper: o.upper,
    work: o.work,
    choice: o.choice,
    rootMount,
    rootfsDir: o.rootfsDir,
    warnings,
    ...(o.readOnly ? { readOnly: true } : {}),
  });
  const { stack } = root;
  await o.onLowerStack?.(stack);
  const preparer = new UpperPreparer(stack);
  const env = [...o.env];
  if (o.tty && !env.some((e) => e.startsWith('TERM='))) env.push('TERM=xterm');
  const proc = resolveProcess(stack, preparer, o.ns, { env, ...(o.user !== undefined ? { user: o.user } : {}), ...(o.cwd !== undefined ? { cwd: o.cwd } : {}) });
  const fstab: FstabEntry[] = [root.rootEntry, ...systemMounts({ preparer, rootMount, scratch: o.scratch, ns: o.ns, toolsDir, ownNetwork })];
  fstab.push(...etcFiles({ stack, preparer, scratch: o.scratch, rootMount, hostname: o.hostname, extraHosts: o.extraHosts ?? [], warnings }));
  fstab.push(...hostnameFile(stack, preparer, o.scratch, rootMount));
  if (o.init) {
    writeFileSync(join(o.scratch, 'dev', 'init'), '');
    fstab.push({ source: o.init, target: join(rootMount, 'dev', 'init'), type: 'none', options: ['bind', 'ro'] });
  }
  fstab.push(...containerMounts(o.mounts, stack, preparer, rootMount));
  writeFileSync(join(o.scratch, 'fstab'), formatFstab(fstab));
  preparer.finish();

  const unsafeEnv = proc.env.some((e) => isLoaderVariable(e.slice(0, e.indexOf('='))));
  const command = o.init ? ['/dev/init', '--', ...o.command] : o.command;
  const setpriv = privilegeDropArgv(toolsDir, proc.user, o.ns);
  const final = unsafeEnv ? [...setpriv, ...toolsDir.argv('env'), ...proc.env, ...command] : [...setpriv, ...command];
  const unshareArgs = sandboxArgv({
    storeRoot: o.storeRoot,
    scratch: o.scratch,
    tools,
    toolsDir,
    ns: o.ns,
    hostname: o.hostname,
    ownNetwork,
    cwd: proc.cwd,
    env: unsafeEnv ? [] : proc.env,
    final,
    prelude: GATE,
    warnings,
  });
  let argv = [tools.setpriv, '--pdeathsig=SIGKILL', '--', tools.unshare, ...unshareArgs];
  if (o.tty) argv = terminalArgv(argv);

  const child = spawn(argv[0]!, argv.slice(1), {
    // The host tools the script starts before pivot_root are found on this PATH; nothing else of
    // kiln's environment reaches the container.
    env: { PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', SHELL: '/bin/sh' },
    stdio: [o.stdin, 'pipe', o.tty ? 'ignore' : 'pipe', 'pipe', 'pipe'],
    // Own process group and session: a Ctrl-C on kiln's terminal is kiln's to forward.
    detached: true,
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve, reject) => {
    child.once('error', (err) => reject(new SandboxError(`cannot start the container helper: ${err.message}`, { cause: err })));
    child.once('close', (code, signal) => resolve({ code, signal }));
  });
  exited.catch(() => undefined);
  const status = child.stdio[3] as Readable;
  const gate = child.stdio[4] as Writable;
  gate.on('error', () => undefined);
  let statusText = '';
  const started = new Promise<string>((resolve) => {
    status.on('data', (d: Buffer) => {
      statusText += d.toString('utf8');
      const lines = statusText.split('\n');
      if (lines.includes('ok')) resolve('');
    });
    status.on('close', () => resolve(statusText.split('\n').filter((l) => l && l !== 'ok').join('; ') || 'the container helper exited before the command started'));
  });

  let pid: number;
  try {
    pid = await findSandboxInit(child, exited);
  } catch (err) {
    killTree(child);
    throw err;
  }
  if (o.tty) {
    // The terminal comes from the host's devpts, which the container does not see: bound at
    // /dev/console (as Docker binds its pty there), ttyname() and `tty` find it.
    let terminal = '';
    try {
      // Its stdout: while the helper waits at the gate its stdin is redirected from the gate.
      terminal = readlinkSync(`/proc/${pid}/fd/1`);
    } catch {
      // no terminal to show
    }
    if (terminal.startsWith('/dev/pts/')) {
      writeFileSync(join(o.scratch, 'dev', 'console'), '');
      fstab.push({ source: terminal, target: join(rootMount, 'dev', 'console'), type: 'none', options: ['bind'] });
      writeFileSync(join(o.scratch, 'fstab'), formatFstab(fstab));
    }
  }
  return {
    child,
    stdin: child.stdin,
    stdout: child.stdout!,
    stderr: o.tty ? null : child.stderr,
    pid,
    setResolvConf: (text) => writeFileSync(join(o.scratch, 'etc', 'resolv.conf'), text),
    release: () => gate.end('go\n'),
    started,
    exited,
    cleanup: () => preparer.removeStubs(),
    warnings,
    process: { env: proc.env, uid: proc.user.uid, gid: proc.user.gid, cwd: proc.cwd },
  };
}

/**
 * /etc/hostname with the container's host name, as docker gives every container (a RUN step gets
 * only hosts and resolv.conf); etcFiles wrote it into the scratch dir. Left alone where the image
 * has something other than a file there.
 */
function hostnameFile(stack: LayerStack, preparer: UpperPreparer, scratch: string, rootMount: string): FstabEntry[] {
  let target: string[];
  try {
    const r = stack.resolve('/etc/hostname');
    if (r.found && !r.found.stat.isFile()) return [];
    target = r.components;
  } catch {
    return [];
  }
  preparer.ensureFile(target);
  return [{ source: join(scratch, 'etc', 'hostname'), target: join(rootMount, ...target), type: 'none', options: ['bind'] }];
}

/** The mounts the user asked for, shallowest first, with their mount points made in the upper dir. */
function containerMounts(mounts: ContainerMountSpec[], stack: LayerStack, preparer: UpperPreparer, rootMount: string): FstabEntry[] {
  const depth = (p: string) => p.split('/').filter(Boolean).length;
  const out: FstabEntry[] = [];
  for (const m of [...mounts].sort((a, b) => depth(a.destination) - depth(b.destination))) {
    const target = stack.resolve(m.destination).components;
    if (target.length === 0) throw new SandboxError(`invalid mount config: the destination cannot be /`);
    const dest = join(rootMount, ...target);
    if (m.type === 'tmpfs') {
      preparer.ensureDir(target, true);
      out.push({ source: 'tmpfs', target: dest, type: 'tmpfs', options: ['nosuid', 'nodev', ...(m.readOnly ? ['ro'] : []), ...(m.options ?? [])] });
      continue;
    }
    let isDir: boolean;
    try {
      isDir = statSync(m.source).isDirectory();
    } catch {
      throw new SandboxError(`invalid mount config: bind source path does not exist: ${m.source}`);
    }
    if (isDir) preparer.ensureDir(target, true);
    else preparer.ensureFile(target);
    out.push({ source: m.source, target: dest, type: 'none', options: m.readOnly ? ['rbind', 'ro'] : ['rbind'] });
  }
  return out;
}

/** argv run on a fresh pseudo-terminal by script(1); its exit status is the command's. */
export function terminalArgv(argv: string[]): string[] {
  const script = findExecutable('script');
  if (!script) throw new SandboxError('script(1) is not installed; kiln needs it for a terminal (-t)', { hint: 'install util-linux (Debian: apt-get install bsdutils)' });
  return [script, '--quiet', '--return', '--command', `exec ${argv.map(shellQuote).join(' ')}`, '/dev/null'];
}

export function shellQuote(word: string): string {
  return `'${word.replace(/'/g, `'\\''`)}'`;
}

/**
 * The host pid of the sandbox's PID 1: the first process under the helper that lives in another PID
 * namespace. The helper is held at its gate, so it is there within milliseconds.
 */
async function findSandboxInit(child: ChildProcess, exited: Promise<unknown>): Promise<number> {
  let gone = false;
  void exited.then(() => (gone = true), () => (gone = true));
  const ownPidNs = readlinkSync('/proc/self/ns/pid');
  for (let attempt = 0; attempt < 2000; attempt++) {
    if (gone || child.pid === undefined) break;
    const found = descendants(child.pid).find((p) => {
      try {
        return readlinkSync(`/proc/${p}/ns/pid`) !== ownPidNs;
      } catch {
        return false;
      }
    });
    if (found !== undefined) return found;
    await new Promise((r) => setTimeout(r, 5));
  }
  throw new SandboxError('the container helper did not start', { hint: 'run `kiln doctor` to see what this host supports' });
}

/** Pids below `pid`, parents before children. */
export function descendants(pid: number): number[] {
  const children = new Map<number, number[]>();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    let stat: string;
    try {
      stat = readFileSync(`/proc/${name}/stat`, 'utf8');
    } catch {
      continue;
    }
    const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
    const list = children.get(ppid) ?? [];
    list.push(Number(name));
    children.set(ppid, list);
  }
  const out: number[] = [];
  const queue = [pid];
  while (queue.length) {
    const p = queue.shift()!;
    for (const c of children.get(p) ?? []) {
      out.push(c);
      queue.push(c);
    }
  }
  return out;
}

function killTree(child: ChildProcess): void {
  if (child.pid === undefined) return;
  try {
    process.kill(-child.pid, 'SIGKILL');
  } catch {
    // already gone
  }
}

/** The host's static tini for `--init` (Debian's tini package; it must not need the image's libc), or undefined. */
export function findInit(): string | undefined {
  for (const p of ['/usr/bin/tini-static', '/usr/bin/docker-init']) if (existsSync(p)) return p;
  return undefined;
}

/** Where kiln's tools sit inside every container (for `exec`). */
export const CONTAINER_TOOLS_DIR = SANDBOX_TOOLS_DIR;
