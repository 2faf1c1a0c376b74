/**
 * `RUN --mount` for the sandbox: each parsed Mount becomes fstab entries, a mount point in the upper
 * dir (removed after the step), and for secrets, a pipe the helper copies into a tmpfs.
 *
 * - cache: a directory under `<store>/cache/mounts/` (cache.ts), bound in.
 * - bind: a host directory or file the build resolved (context, stage or image); read-only by
 *   default; `rw` mounts an overlay over it (or a copy where overlay is unavailable) so writes are
 *   discarded with the step.
 * - tmpfs: a fresh tmpfs, `size` honoured.
 * - secret: the value (from a file, an environment variable or memory, given by the caller) travels
 *   through a pipe into a tmpfs that exists only inside the sandbox's mount namespace, and is bound
 *   read-only onto the target; `env=` exports it instead of (or as well as) a file. It is never on
 *   disk, in a layer, in an argv or in a log.
 */
import { copyFileSync, cpSync, mkdirSync, readFileSync, statSync, symlinkSync } from 'node:fs';
import { join, posix, relative } from 'node:path';
import type { Mount } from '../dockerfile/instructions/mounts.js';
import { acquireCache, type CacheLease } from './cache.js';
import { RunMountError } from './errors.js';
import type { FstabEntry } from './fstab.js';
import type { LayerStack, UpperPreparer } from './layers.js';

/** A parsed `--mount` plus what only the build can resolve. */
export interface RunMount {
  mount: Mount;
  /**
   * bind: the host directory or file to mount (the build resolves the context, stage or image and
   * `source` to it). cache: a directory whose content seeds a new cache (`from` + `source`).
   */
  hostPath?: string;
}

/** Where a secret's value comes from. */
export type SecretSource = { file: string } | { env: string } | { value: Uint8Array | string };

export interface PreparedMounts {
  /** Entries for the main fstab (after the rootfs and system mounts). */
  fstab: FstabEntry[];
  /** Binds of secret files, mounted once the helper has written them. */
  fstab2: FstabEntry[];
  /** Words for the helper script (`secret …`, `envsecret …`). */
  words: string[];
  /** Values to write, in order, to the pipes at fd 4, 5, … */
  pipes: Buffer[];
  /** Secret values, for redacting output. */
  secretValues: Buffer[];
  leases: CacheLease[];
}

export interface PrepareMountsOptions {
  mounts: RunMount[];
  secrets: Record<string, SecretSource>;
  stack: LayerStack;
  preparer: UpperPreparer;
  /** The sandbox's root mount point on the host. */
  rootMount: string;
  /** Per-step directory in the store (rw bind overlays and copies). */
  runDir: string;
  /** Per-step directory in a tmpfs when there is one (the secrets' mount point). */
  scratchDir: string;
  storeRoot: string;
  cacheRoot: string;
  workingDir: string;
  /** Overlay is available for rw bind mounts. */
  overlay: boolean;
  canChown: boolean;
  env: NodeJS.ProcessEnv;
  signal?: AbortSignal;
  onWarning: (message: string) => void;
}

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** Variable names the dynamic loader or libc act on: not allowed for env secrets (see script.ts). */
export function isLoaderVariable(name: string): boolean {
  return (
    name.startsWith('LD_') ||
    name.startsWith('MALLOC_') ||
    ['GCONV_PATH', 'GETCONF_DIR', 'GLIBC_TUNABLES', 'HOSTALIASES', 'LOCALDOMAIN', 'LOCPATH', 'NIS_PATH', 'NLSPATH', 'RESOLV_HOST_CONF', 'RES_OPTIONS', 'TZDIR', 'TMPDIR'].includes(name)
  );
}

export async function prepareMounts(opts: PrepareMountsOptions): Promise<PreparedMounts> {
  const out: PreparedMounts = { fstab: [], fstab2: [], words: [], pipes: [], secretValues: [], leases: [] };
  const sorted = [...opts.mounts].sort((a, b) => depth(targetOf(a.mount, opts.workingDir)) - depth(targetOf(b.mount, opts.workingDir)));
  let secretsDir: string | undefined;
  try {
    for (const [index, rm] of sorted.entries()) {
      const m = rm.mount;
      opts.signal?.throwIfAborted();
      switch (m.type) {
        case 'cache': {
          const target = resolveTarget(opts, targetOf(m, opts.workingDir));
          opts.preparer.ensureDir(target, true);
          const lease = await acquireCache(m, {
            cacheRoot: opts.cacheRoot,
            canChown: opts.canChown,
            ...(rm.hostPath ? { seed: rm.hostPath } : {}),
            ...(opts.signal ? { signal: opts.signal } : {}),
            onWait: opts.onWarning,
          });
          out.leases.push(lease);
          out.fstab.push(bind(lease.dir, join(opts.rootMount, ...target), m.readOnly));
          break;
        }
        case 'bind': {
          if (!rm.hostPath) throw new RunMountError(`--mount=type=bind,target=${m.target}: the build did not resolve its source`);
          let st;
          try {
            // The build may hand over a symlink (a context entry); what it points to is mounted.
            st = statSync(rm.hostPath);
          } catch {
            throw new RunMountError(`--mount=type=bind: source ${m.source || '.'} not found`);
          }
          const target = resolveTarget(opts, targetOf(m, opts.workingDir));
          const dest = join(opts.rootMount, ...target);
          if (st.isDirectory()) opts.preparer.ensureDir(target, true);
          else opts.preparer.ensureFile(target);
          if (m.readOnly) {
            out.fstab.push(bind(rm.hostPath, dest, true));
          } else if (st.isDirectory() && opts.overlay) {
            // Writes land in a throw-away upper dir; the short link keeps the option string short.
            const dir = join(opts.runDir, `bind${index}`);
            mkdirSync(join(dir, 'upper'), { recursive: true });
            mkdirSync(join(dir, 'work'));
            symlinkSync(rm.hostPath, join(dir, 'lower'));
            const rel = relative(opts.storeRoot, dir);
            out.fstab.push({ source: 'overlay', target: dest, type: 'overlay', options: [`lowerdir=${rel}/lower`, `upperdir=${rel}/upper`, `workdir=${rel}/work`, 'userxattr'] });
          } else {
            const copy = join(opts.runDir, `bind${index}`);
            if (st.isDirectory()) cpSync(rm.hostPath, copy, { recursive: true, preserveTimestamps: true, verbatimSymlinks: true });
            else copyFileSync(rm.hostPath, copy);
            out.fstab.push(bind(copy, dest, false));
          }
          break;
        }
        case 'tmpfs': {
          const target = resolveTarget(opts, targetOf(m, opts.workingDir));
          opts.preparer.ensureDir(target, true);
          const options = ['nosuid', 'nodev'];
          if (m.sizeLimit > 0) options.push(`size=${m.sizeLimit}`);
          out.fstab.push({ source: 'tmpfs', target: join(opts.rootMount, ...target), type: 'tmpfs', options });
          break;
        }
        case 'secret': {
          const id = m.cacheId || (m.target ? posix.basename(m.target) : '');
          if (!id) throw new RunMountError('--mount=type=secret needs an id or a target');
          const value = readSecret(id, opts.secrets[id], opts.env);
          if (value === undefined) {
            if (m.required) throw new RunMountError(`secret ${id} not found`, { hint: `pass it to the build, e.g. --secret id=${id},src=FILE` });
            break;
          }
          out.secretValues.push(value);
          const wantsEnv = m.env !== undefined;
          if (wantsEnv) {
            const name = m.env || id;
            if (!ENV_NAME.test(name)) throw new RunMountError(`secret ${id}: "${name}" is not a valid environment variable name`);
            if (isLoaderVariable(name)) throw new RunMountError(`secret ${id}: ${name} cannot carry a secret (the dynamic loader reads it)`);
            out.words.push('envsecret', String(4 + out.pipes.length), name);
            out.pipes.push(value);
          }
          if (!wantsEnv || m.target) {
            const targetPath = m.target || `/run/secrets/${id}`;
            const target = resolveTarget(opts, posix.isAbsolute(targetPath) ? targetPath : posix.join(opts.workingDir, targetPath));
            opts.preparer.ensureFile(target);
            if (!secretsDir) {
              secretsDir = join(opts.scratchDir, 'secrets');
              mkdirSync(secretsDir);
              out.fstab.push({ source: 'tmpfs', target: secretsDir, type: 'tmpfs', options: ['mode=0700', 'nosuid', 'nodev', 'noexec', 'size=16m'] });
            }
            const file = join(secretsDir, String(out.pipes.length));
            out.words.push('secret', String(4 + out.pipes.length), file, (m.mode ?? 0o400).toString(8).padStart(4, '0'), String(m.uid ?? 0), String(m.gid ?? 0));
            out.pipes.push(value);
            out.fstab2.push(bind(file, join(opts.rootMount, ...target), true));
          }
          break;
        }
        case 'ssh':
          throw new RunMountError('RUN --mount=type=ssh is not supported by kiln yet', { hint: 'use a secret mount for keys the step needs' });
        default:
          throw new RunMountError(`unknown mount type ${String((m as Mount).type)}`);
      }
    }
  } catch (err) {
    for (const l of out.leases) await l.release();
    throw err;
  }
  return out;
}

function bind(source: string, target: string, readOnly: boolean): FstabEntry {
  return { source, target, type: 'none', options: readOnly ? ['bind', 'ro'] : ['bind'] };
}

function targetOf(m: Mount, workingDir: string): string {
  const t = m.target;
  if (m.type === 'secret' && !t) return `/run/secrets/${m.cacheId}`;
  return posix.isAbsolute(t) ? t : posix.join(workingDir, t);
}

function depth(path: string): number {
  return path.split('/').filter(Boolean).length;
}

function resolveTarget(opts: PrepareMountsOptions, path: string): string[] {
  const r = opts.stack.resolve(path);
  if (r.components.length === 0) throw new RunMountError(`cannot mount over the root directory (target ${path})`);
  return r.components;
}

function readSecret(id: string, source: SecretSource | undefined, env: NodeJS.ProcessEnv): Buffer | undefined {
  if (!source) return undefined;
  if ('value' in source) return Buffer.from(source.value);
  if ('env' in source) {
    const v = env[source.env];
    return v === undefined ? undefined : Buffer.from(v);
  }
  try {
    return readFileSync(source.file);
  } catch (err) {
    throw new RunMountError(`secret ${id}: cannot read ${source.file}: ${(err as Error).message}`);
  }
}
