/**
 * What every sandbox needs before its helper starts, shared by RUN steps (run.ts) and containers
 * (container.ts): the root file system (overlay over the image's layers, or a copy), the system
 * mounts (proc with Docker's masks, /dev, devpts, shm, the tools, sysfs), resolv.conf and hosts,
 * the user, environment and working directory, the privilege drop, and the helper's argv.
 *
 * Everything here is prepared in Node without privileges; the helper (script.ts) only mounts what
 * the fstab lists and execs.
 */
import { chmodSync, existsSync, lchownSync, lstatSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { RunUserError, SandboxError } from './errors.js';
import type { FstabEntry } from './fstab.js';
import { isMapped } from './idmap.js';
import { LayerStack, UpperPreparer, copyMetadata } from './layers.js';
import { SANDBOX_SCRIPT } from './script.js';
import { applyLayers, type SnapshotterKind } from './snapshotter.js';
import { SANDBOX_TOOLS_DIR, type HostTools, type ToolsDir } from './tools.js';
import type { NamespaceInfo } from './userns.js';
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

/** Paths Docker masks in /proc (bound over with /dev/null, or an empty read-only tmpfs for directories). */
const PROC_MASKED = ['acpi', 'asound', 'interrupts', 'kcore', 'keys', 'latency_stats', 'timer_list', 'timer_stats', 'sched_debug', 'scsi'];
/** Paths Docker makes read-only in /proc. */
const PROC_READONLY = ['bus', 'fs', 'irq', 'sys', 'sysrq-trigger'];
const DEVICES = ['null', 'zero', 'full', 'random', 'urandom', 'tty'];

/** The rootfs below the sandbox: `store.lowerDirs(image)` or `lowerDirsFor(store, diffIDs)`. */
export interface LowerLayers {
  /** Overlay lowerdirs relative to the store root, topmost first. */
  lowerdirs: string[];
  /** The same directories as absolute paths. */
  absolute: string[];
}

export interface SnapshotChoice {
  kind: SnapshotterKind;
  volatile: boolean;
  reason?: string;
}

export interface RootFs {
  /** The snapshotter actually used (overlay falls back to copy for scratch images or too many layers). */
  choice: SnapshotChoice;
  /** The merged view: the upper dir (or the copy) over the lowers. */
  stack: LayerStack;
  rootEntry: FstabEntry;
  /** With the copy snapshotter: the directory holding the whole tree. */
  rootfs: string | undefined;
}

export interface RootFsOptions {
  storeRoot: string;
  lower: LowerLayers;
  upper: string;
  work: string;
  choice: SnapshotChoice;
  /** Where the helper mounts the root. */
  rootMount: string;
  /** Where the copy snapshotter puts the tree (kept when it already exists: a container's own copy). */
  rootfsDir: string;
  readOnly?: boolean;
  warnings: string[];
}

/** The root file system entry: overlay with the upper dir over the lowers, else a copy of the layers. */
export function prepareRootFs(o: RootFsOptions): RootFs {
  let choice = o.choice;
  const ro = o.readOnly ? ['ro'] : [];
  const overlayOption = (volatile: boolean) =>
    [`lowerdir=${o.lower.lowerdirs.join(':')}`, `upperdir=${storePath(o.storeRoot, o.upper)}`, `workdir=${storePath(o.storeRoot, o.work)}`, 'userxattr', ...(volatile ? ['volatile'] : []), ...ro];
  if (choice.kind === 'overlay' && o.lower.lowerdirs.length > 0 && overlayOption(choice.volatile).join(',').length > 4095) {
    o.warnings.push(`overlay: ${o.lower.lowerdirs.length} layers do not fit in one mount; the layers are copied instead`);
    choice = { kind: 'copy', volatile: false, reason: 'too many layers' };
  }
  let stack: LayerStack;
  let rootEntry: FstabEntry;
  let rootfs: string | undefined;
  if (choice.kind === 'overlay' && o.lower.lowerdirs.length > 0) {
    mkdirSync(o.upper, { recursive: true });
    mkdirSync(o.work, { recursive: true });
    // The merged root directory takes the upper dir's metadata: give it the image's.
    const top = o.lower.absolute[0]!;
    copyMetadata(top, o.upper, lstatSync(top));
    stack = new LayerStack([o.upper, ...o.lower.absolute]);
    rootEntry = { source: 'overlay', target: o.rootMount, type: 'overlay', options: overlayOption(choice.volatile) };
  } else {
    // copy: also the way for an image without layers (FROM scratch), which overlay cannot mount.
    if (choice.kind === 'overlay') choice = { kind: 'copy', volatile: false, reason: 'no layers' };
    rootfs = o.rootfsDir;
    if (!existsSync(rootfs)) applyLayers(o.lower.absolute, rootfs);
    stack = new LayerStack([rootfs]);
    rootEntry = { source: rootfs, target: o.rootMount, type: 'none', options: ['bind', ...ro] };
  }
  if (choice.kind === 'copy' && choice.reason && choice.reason !== 'requested' && choice.reason !== 'no layers') {
    o.warnings.push(`overlay unavailable (${choice.reason}); using the copy snapshotter`);
  }
  return { choice, stack, rootEntry, rootfs };
}

export interface ProcessSpec {
  user: ExecUser;
  env: string[];
  cwd: string;
}

/**
 * The user (from the image's own passwd and group files), the environment (PATH and HOME filled in
 * as Docker does) and the working directory (created when missing, as BuildKit and Docker do).
 */
export function resolveProcess(stack: LayerStack, preparer: UpperPreparer, ns: NamespaceInfo, spec: { user?: string; env?: string[]; cwd?: string }): ProcessSpec {
  const user = resolveUser(spec.user, stack.readFile('/etc/passwd')?.toString('utf8'), stack.readFile('/etc/group')?.toString('utf8'));
  checkUser(user, ns, spec.user);
  const env = buildEnv(spec.env ?? [], user);
  const cwd = spec.cwd && spec.cwd !== '' ? (spec.cwd.startsWith('/') ? spec.cwd : `/${spec.cwd}`) : '/';
  const cwdResolved = stack.resolve(cwd);
  if (!cwdResolved.found) preparer.ensureDir(cwdResolved.components, false);
  else if (!cwdResolved.found.stat.isDirectory()) throw new SandboxError(`the working directory ${cwd} is not a directory in the image`);
  return { user, env, cwd };
}

export interface SystemMountsOptions {
  preparer: UpperPreparer;
  rootMount: string;
  /** The sandbox's scaffolding directory (the /dev skeleton goes there). */
  scratch: string;
  ns: NamespaceInfo;
  toolsDir: ToolsDir;
  /** The sandbox has a network namespace of its own (sysfs can be mounted). */
  ownNetwork: boolean;
}

/** proc with Docker's masks, /dev with the host's harmless devices, devpts, shm, the tools, sysfs. */
export function systemMounts(o: SystemMountsOptions): FstabEntry[] {
  const { preparer, rootMount, ns } = o;
  preparer.ensureDir(['proc'], true);
  preparer.ensureDir(['dev'], true);
  const fstab: FstabEntry[] = [{ source: 'proc', target: join(rootMount, 'proc'), type: 'proc', options: ['nosuid', 'nodev', 'noexec'] }];
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
  const devDir = join(o.scratch, 'dev');
  makeDevSkeleton(devDir);
  fstab.push({ source: devDir, target: join(rootMount, 'dev'), type: 'none', options: ['bind', 'nosuid'] });
  for (const d of DEVICES) fstab.push({ source: `/dev/${d}`, target: join(rootMount, 'dev', d), type: 'none', options: ['bind'] });
  const ttyGid = ns.mapping === 'single' || (ns.mode === 'rootless' && !isMapped(ns.gidMap, 5)) ? [] : ['gid=5'];
  fstab.push({ source: 'devpts', target: join(rootMount, 'dev', 'pts'), type: 'devpts', options: ['newinstance', 'ptmxmode=0666', 'mode=0620', ...ttyGid, 'nosuid', 'noexec'] });
  fstab.push({ source: 'shm', target: join(rootMount, 'dev', 'shm'), type: 'tmpfs', options: ['nosuid', 'nodev', 'noexec', 'mode=1777', 'size=65536k'] });
  fstab.push({ source: o.toolsDir.dir, target: join(rootMount, SANDBOX_TOOLS_DIR), type: 'none', options: ['bind', 'ro'] });
  if (o.ownNetwork) {
    // sysfs can only be mounted with a network namespace of one's own (it shows the namespace's devices).
    preparer.ensureDir(['sys'], true);
    fstab.push({ source: 'sysfs', target: join(rootMount, 'sys'), type: 'sysfs', options: ['ro', 'nosuid', 'nodev', 'noexec'] });
  }
  return fstab;
}

export interface EtcFilesOptions {
  stack: LayerStack;
  preparer: UpperPreparer;
  scratch: string;
  rootMount: string;
  hostname: string;
  /** `host:ip` entries, as in `--add-host`. */
  extraHosts: string[];
  /** resolv.conf's content; default the host's. */
  resolvConf?: string;
  warnings: string[];
}

/**
 * resolv.conf and hosts, written to `<scratch>/etc/` and bound over the image's (files, so a bind
 * keeps seeing later in-place rewrites, which is how a container's DNS is filled in once its network
 * is up).
 */
export function etcFiles(o: EtcFilesOptions): FstabEntry[] {
  const etcDir = join(o.scratch, 'etc');
  mkdirSync(etcDir, { recursive: true });
  writeFileSync(join(etcDir, 'resolv.conf'), o.resolvConf ?? hostResolvConf());
  writeFileSync(join(etcDir, 'hosts'), hostsFile(o.hostname, o.extraHosts));
  writeFileSync(join(etcDir, 'hostname'), `${o.hostname}\n`);
  const out: FstabEntry[] = [];
  for (const file of ['resolv.conf', 'hosts']) {
    const target = bindableFile(o.stack, `/etc/${file}`);
    if (!target) {
      o.warnings.push(`/etc/${file} in the image is not a regular file; not replaced`);
      continue;
    }
    o.preparer.ensureFile(target);
    out.push({ source: join(etcDir, file), target: join(o.rootMount, ...target), type: 'none', options: ['bind'] });
  }
  return out;
}

/**
 * setpriv's argv inside the sandbox: Docker's default capabilities, no_new_privs, the user's uid,
 * gid and groups; the command follows.
 */
export function privilegeDropArgv(toolsDir: ToolsDir, user: ExecUser, ns: NamespaceInfo): string[] {
  return [
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
}

export interface SandboxArgvOptions {
  storeRoot: string;
  scratch: string;
  tools: HostTools;
  toolsDir: ToolsDir;
  ns: NamespaceInfo;
  hostname: string;
  /** A network namespace of its own (lo is brought up in it). */
  ownNetwork: boolean;
  cgroupProcs?: string[];
  ulimit?: string;
  cwd: string;
  /** `secret …` / `envsecret …` words for the script. */
  words?: string[];
  /** NAME=VALUE words the script exports. */
  env: string[];
  /** The final argv (setpriv … command). */
  final: string[];
  /** Shell code run before the script (the container's start gate). */
  prelude?: string;
  warnings: string[];
}

/** unshare's arguments for the helper: fresh namespaces running the sandbox script. */
export function sandboxArgv(o: SandboxArgvOptions): string[] {
  const { tools, ns } = o;
  let hostnameProgram = '';
  if (ns.mode === 'rootless') {
    if (tools.hostname) hostnameProgram = tools.hostname;
    else o.warnings.push('hostname(1) is not installed; the sandbox keeps the host name');
  }
  let ip = '';
  if (o.ownNetwork) {
    if (tools.ip) ip = tools.ip;
    else o.warnings.push('ip(8) is not installed; lo stays down in the private network namespace');
  }
  const args = [
    o.storeRoot,
    o.scratch,
    tools.mount,
    ns.mode === 'rootless' && !hostnameProgram ? '' : o.hostname,
    hostnameProgram,
    ip,
    tools.pivotRoot,
    (o.cgroupProcs ?? []).join(':'),
    o.ulimit ?? '',
    o.cwd,
    o.toolsDir.argv('umount').join(' '),
    ...(o.words ?? []),
    '--',
    ...o.env,
    '--',
    ...o.final,
  ];
  const script = o.prelude ? `${o.prelude}\n${SANDBOX_SCRIPT}` : SANDBOX_SCRIPT;
  return ['--mount', '--pid', '--fork', '--uts', '--ipc', ...(o.ownNetwork ? ['--net'] : []), '--kill-child', '--', tools.sh, '-c', script, 'kiln-sandbox', ...args];
}

/** A path for overlay options: relative to the store root when inside it (short), else absolute. */
export function storePath(storeRoot: string, path: string): string {
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

export function checkUser(user: ExecUser, ns: NamespaceInfo, spec: string | undefined): void {
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

export function buildEnv(env: string[], user: ExecUser): string[] {
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
