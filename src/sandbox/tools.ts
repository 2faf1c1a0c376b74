/**
 * The host programs a sandbox is built from, and the private copies of those it needs *after*
 * pivot_root.
 *
 * kiln sets up a RUN sandbox with util-linux and a small shell script instead of a native helper:
 * Node cannot call unshare/mount/pivot_root itself, and a compiled helper would need a compiler on
 * every install. The catch is the last step. Once the helper has pivoted into the image's rootfs and
 * detached the host's root, no host path resolves any more, yet it still has to drop capabilities,
 * switch user and exec the command. So the few programs needed from that point on (setpriv, env,
 * umount) are copied with their shared libraries and the dynamic loader into `<store>/sandbox/tools/
 * <key>/`, bind-mounted read-only at /dev/.kiln inside the sandbox, and run through the loader
 * explicitly (`ld.so --library-path /dev/.kiln/lib /dev/.kiln/setpriv …`), which works whatever libc
 * the image has, or none. The copy is made once per store and host toolset; `key` changes when the
 * host's binaries do.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { accessSync, constants as fsc, closeSync, openSync, readSync, realpathSync, statSync } from 'node:fs';
import { promises as fsp } from 'node:fs';
import { basename, delimiter, isAbsolute, join } from 'node:path';
import { tempName } from '../oci/layout/fs.js';
import { ownerTag } from '../store/owner.js';
import { SandboxError } from './errors.js';

/** Where system tools live when PATH (e.g. a user's) leaves out the sbin directories. */
const SYSTEM_DIRS = ['/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin'];

/**
 * The executable `name` on PATH. Unless `pathOnly`, the standard system directories are searched too:
 * `pivot_root` sits in /usr/sbin, which a normal user's PATH often lacks. newuidmap/newgidmap are
 * looked up with `pathOnly`, as unshare(1) and podman do, so a user can see what kiln sees.
 */
export function findExecutable(name: string, opts: { env?: NodeJS.ProcessEnv; pathOnly?: boolean } = {}): string | undefined {
  if (isAbsolute(name)) return isExecutable(name) ? name : undefined;
  const path = (opts.env ?? process.env).PATH ?? '';
  const dirs = path.split(delimiter).filter((d) => isAbsolute(d));
  if (!opts.pathOnly) for (const d of SYSTEM_DIRS) if (!dirs.includes(d)) dirs.push(d);
  for (const dir of dirs) {
    const candidate = join(dir, name);
    if (isExecutable(candidate)) return candidate;
  }
  return undefined;
}

function isExecutable(path: string): boolean {
  try {
    accessSync(path, fsc.X_OK);
    return statSync(path).isFile();
  } catch {
    return false;
  }
}

/** Host programs the sandbox helper runs before pivot_root. */
export interface HostTools {
  sh: string;
  unshare: string;
  mount: string;
  pivotRoot: string;
  setpriv: string;
  env: string;
  umount: string;
  /** Sets the hostname where /proc/sys/kernel/hostname is not writable (rootless). */
  hostname?: string;
  /** Brings `lo` up in a private network namespace. */
  ip?: string;
  cat?: string;
  chmod?: string;
  chown?: string;
}

const REQUIRED: Array<[keyof HostTools, string, string]> = [
  ['sh', 'sh', 'dash or bash'],
  ['unshare', 'unshare', 'util-linux'],
  ['mount', 'mount', 'mount'],
  ['umount', 'umount', 'mount'],
  ['pivotRoot', 'pivot_root', 'util-linux'],
  ['setpriv', 'setpriv', 'util-linux (setpriv)'],
  ['env', 'env', 'coreutils'],
];
const OPTIONAL: Array<[keyof HostTools, string]> = [
  ['hostname', 'hostname'],
  ['ip', 'ip'],
  ['cat', 'cat'],
  ['chmod', 'chmod'],
  ['chown', 'chown'],
];

let cachedTools: HostTools | undefined;

/** The host tools, or a SandboxError naming the first missing one and its package. */
export function hostTools(): HostTools {
  if (cachedTools) return cachedTools;
  const tools: Partial<HostTools> = {};
  for (const [key, name, pkg] of REQUIRED) {
    const found = key === 'sh' ? findExecutable('/bin/sh') : findExecutable(name);
    if (!found) {
      throw new SandboxError(`${name} is not installed; kiln needs it to run build steps`, { hint: `install ${pkg} (Debian: apt-get install ${pkg.split(' ')[0]})` });
    }
    tools[key] = found;
  }
  for (const [key, name] of OPTIONAL) {
    const found = findExecutable(name);
    if (found) tools[key] = found;
  }
  cachedTools = tools as HostTools;
  return cachedTools;
}

/** Which of the host tools are missing, as `[program, package]` pairs (for `kiln doctor`). */
export function missingHostTools(): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  for (const [key, name, pkg] of REQUIRED) {
    if (!(key === 'sh' ? findExecutable('/bin/sh') : findExecutable(name))) out.push([name, pkg]);
  }
  return out;
}

/** The mount point of the tools inside every sandbox. */
export const SANDBOX_TOOLS_DIR = '/dev/.kiln';

/** The programs copied into the tools directory. */
const COPIED_TOOLS = ['setpriv', 'env', 'umount'] as const;
export type SandboxTool = (typeof COPIED_TOOLS)[number];

export interface ToolsDir {
  /** Host path of the prepared directory (bind-mounted read-only at SANDBOX_TOOLS_DIR). */
  dir: string;
  /** The argv prefix that runs `tool` inside the sandbox. */
  argv(tool: SandboxTool): string[];
}

const prepared = new Map<string, Promise<ToolsDir>>();

/** The tools directory under `storeRoot`, created on first use (shared by concurrent callers). */
export function prepareToolsDir(storeRoot: string): Promise<ToolsDir> {
  let p = prepared.get(storeRoot);
  if (!p) {
    p = buildToolsDir(storeRoot);
    p.catch(() => prepared.delete(storeRoot));
    prepared.set(storeRoot, p);
  }
  return p;
}

interface ToolPlan {
  /** The dynamic loader (PT_INTERP), or undefined when every tool is static. */
  loader?: string;
  binaries: Map<SandboxTool, string>;
  /** Shared libraries by file name. */
  libraries: Map<string, string>;
}

async function buildToolsDir(storeRoot: string): Promise<ToolsDir> {
  const tools = hostTools();
  const plan = planTools({ setpriv: tools.setpriv, env: tools.env, umount: tools.umount });
  const hash = createHash('sha256');
  const files = [...(plan.loader ? [plan.loader] : []), ...plan.binaries.values(), ...plan.libraries.values()];
  for (const f of files) {
    const st = statSync(f);
    hash.update(`${f}\0${st.size}\0${st.mtimeMs}\0`);
  }
  const key = hash.digest('hex').slice(0, 16);
  const base = join(storeRoot, 'sandbox', 'tools');
  const dir = join(base, key);
  const result: ToolsDir = {
    dir,
    argv: (tool) => {
      const bin = `${SANDBOX_TOOLS_DIR}/${tool}`;
      return plan.loader ? [`${SANDBOX_TOOLS_DIR}/ld.so`, '--library-path', `${SANDBOX_TOOLS_DIR}/lib`, bin] : [bin];
    },
  };
  try {
    await fsp.access(join(dir, '.complete'));
    return result;
  } catch {
    // not prepared yet
  }
  await fsp.mkdir(base, { recursive: true, mode: 0o755 });
  const work = join(base, `.${tempName(ownerTag())}`);
  await fsp.mkdir(join(work, 'lib'), { recursive: true, mode: 0o755 });
  try {
    if (plan.loader) await copyExecutable(plan.loader, join(work, 'ld.so'));
    for (const [name, src] of plan.binaries) await copyExecutable(src, join(work, name));
    for (const [name, src] of plan.libraries) await copyExecutable(src, join(work, 'lib', name));
    await fsp.chmod(work, 0o755);
    await fsp.chmod(join(work, 'lib'), 0o755);
    await fsp.writeFile(join(work, '.complete'), '');
    try {
      await fsp.rename(work, dir);
    } catch (err) {
      // Another process prepared the same set first.
      if ((err as NodeJS.ErrnoException).code !== 'ENOTEMPTY' && (err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
  } finally {
    await fsp.rm(work, { recursive: true, force: true });
  }
  return result;
}

async function copyExecutable(src: string, dst: string): Promise<void> {
  await fsp.copyFile(src, dst);
  await fsp.chmod(dst, 0o755);
}

/** Resolves the loader and shared libraries of the tools. */
function planTools(binaries: Record<SandboxTool, string>): ToolPlan {
  const plan: ToolPlan = { binaries: new Map(), libraries: new Map() };
  for (const name of COPIED_TOOLS) {
    const path = realpathSync(binaries[name]);
    plan.binaries.set(name, path);
    const interp = elfInterpreter(path);
    if (!interp) continue;
    if (plan.loader && plan.loader !== realpathSync(interp)) {
      throw new SandboxError(`${path} uses the dynamic loader ${interp}, other tools ${plan.loader}`, { hint: 'kiln expects one libc on the host' });
    }
    plan.loader = realpathSync(interp);
    for (const lib of sharedLibraries(interp, path)) {
      if (!plan.libraries.has(basename(lib.name))) plan.libraries.set(basename(lib.name), realpathSync(lib.path));
    }
  }
  return plan;
}

/** The shared libraries `binary` loads, as the loader itself lists them (what ldd does). */
function sharedLibraries(loader: string, binary: string): Array<{ name: string; path: string }> {
  let out: string;
  try {
    out = execFileSync(loader, ['--list', binary], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], env: {} });
  } catch (err) {
    throw new SandboxError(`cannot list the shared libraries of ${binary}: ${String((err as { stderr?: unknown }).stderr ?? err).trim()}`);
  }
  const libs: Array<{ name: string; path: string }> = [];
  for (const line of out.split('\n')) {
    const m = /^\s*(\S+)\s+=>\s+(\/\S+)\s+\(/.exec(line);
    if (m) libs.push({ name: m[1]!, path: m[2]! });
  }
  return libs;
}

/** PT_INTERP of an ELF executable (its dynamic loader), or undefined for a static one. */
export function elfInterpreter(path: string): string | undefined {
  const fd = openSync(path, 'r');
  try {
    const head = Buffer.alloc(64);
    readSync(fd, head, 0, 64, 0);
    if (head.readUInt32BE(0) !== 0x7f454c46) throw new SandboxError(`${path} is not an ELF executable`);
    const is64 = head[4] === 2;
    const le = head[5] === 1;
    const u16 = (b: Buffer, o: number) => (le ? b.readUInt16LE(o) : b.readUInt16BE(o));
    const u32 = (b: Buffer, o: number) => (le ? b.readUInt32LE(o) : b.readUInt32BE(o));
    const u64 = (b: Buffer, o: number) => Number(le ? b.readBigUInt64LE(o) : b.readBigUInt64BE(o));
    const phoff = is64 ? u64(head, 0x20) : u32(head, 0x1c);
    const phentsize = u16(head, is64 ? 0x36 : 0x2a);
    const phnum = u16(head, is64 ? 0x38 : 0x2c);
    const ph = Buffer.alloc(phentsize * phnum);
    readSync(fd, ph, 0, ph.length, phoff);
    for (let i = 0; i < phnum; i++) {
      const o = i * phentsize;
      if (u32(ph, o) !== 3) continue; // PT_INTERP
      const offset = is64 ? u64(ph, o + 8) : u32(ph, o + 4);
      const size = is64 ? u64(ph, o + 32) : u32(ph, o + 16);
      const buf = Buffer.alloc(size);
      readSync(fd, buf, 0, size, offset);
      return buf.toString('latin1').replace(/\0.*$/s, '');
    }
    return undefined;
  } finally {
    closeSync(fd);
  }
}
