/**
 * Resource limits for a RUN step, with whatever this host allows, and an honest account of what was
 * applied so the build log can say so.
 *
 * - cgroup v1 child groups (memory, pids, cpu) when kiln may create them: as real root, or rootless
 *   when an administrator delegated (chowned) the v1 directories kiln's process lives in. The helper
 *   joins them before it starts anything (script.ts), and kiln removes them after the step.
 * - otherwise rlimits set by the helper's shell: RLIMIT_AS for memory (address space, a coarse
 *   stand-in) and RLIMIT_NPROC for pids (counted per uid: rootless, that is every process of the
 *   user, kiln's own included). A CPU quota has no rlimit equivalent and is reported as not applied.
 *
 * cgroup v2 is not used: on the machines kiln targets the unified hierarchy has no memory, pids or
 * cpu controller, and delegating v2 needs systemd, which is not there.
 */
import { existsSync, mkdirSync, readFileSync, rmdirSync, writeFileSync, accessSync, constants as fsc } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

export interface ResourceLimits {
  /** Bytes of memory (cgroup memory.limit_in_bytes, else RLIMIT_AS). */
  memory?: number;
  /** CPU time in microseconds per `cpuPeriod` (Docker's --cpu-quota); 50000 with the default period is half a CPU. */
  cpuQuota?: number;
  /** Microseconds (default 100000). */
  cpuPeriod?: number;
  /** Processes (cgroup pids.max, else RLIMIT_NPROC). */
  pidsLimit?: number;
}

export type LimitMechanism = 'cgroup-v1' | 'rlimit' | 'not-applied';

export interface AppliedLimits {
  memory?: LimitMechanism;
  cpu?: LimitMechanism;
  pids?: LimitMechanism;
  /** One sentence per limit that was weakened or dropped. */
  notes: string[];
}

export interface PreparedLimits {
  /** cgroup.procs files the helper writes itself into. */
  procs: string[];
  /** `ulimit` settings for the helper's shell, `-v=KB,-p=N`, or ''. */
  ulimit: string;
  applied: AppliedLimits;
  /** True when the memory cgroup hit its limit (an exit by SIGKILL is then an out-of-memory kill). */
  memoryExhausted(): boolean;
  cleanup(): Promise<void>;
}

interface V1Controller {
  /** The directory of kiln's own cgroup for this controller. */
  dir: string;
}

let discovered: Map<string, V1Controller> | undefined;

/** kiln's own v1 cgroup directories, by controller name. */
export function v1Controllers(): Map<string, V1Controller> {
  if (discovered) return discovered;
  discovered = new Map();
  let cgroups: string;
  let mountinfo: string;
  try {
    cgroups = readFileSync('/proc/self/cgroup', 'utf8');
    mountinfo = readFileSync('/proc/self/mountinfo', 'utf8');
  } catch {
    return discovered;
  }
  const mounts: Array<{ root: string; point: string; options: string[] }> = [];
  for (const line of mountinfo.split('\n')) {
    const sep = line.indexOf(' - ');
    if (sep < 0) continue;
    const left = line.slice(0, sep).split(' ');
    const right = line.slice(sep + 3).split(' ');
    if (right[0] !== 'cgroup') continue;
    mounts.push({ root: unescape(left[3]!), point: unescape(left[4]!), options: (right[2] ?? '').split(',') });
  }
  for (const line of cgroups.split('\n')) {
    const m = /^\d+:([^:]*):(.*)$/.exec(line);
    if (!m || !m[1]) continue;
    for (const controller of m[1].split(',')) {
      const mount = mounts.find((mt) => mt.options.includes(controller));
      if (!mount) continue;
      const rel = mount.root === '/' ? m[2]! : m[2]!.startsWith(mount.root) ? m[2]!.slice(mount.root.length) : m[2]!;
      discovered.set(controller, { dir: join(mount.point, rel) });
    }
  }
  return discovered;
}

function unescape(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
}

/** True when kiln can create child groups of its own cgroup for `controller`. */
export function canUseCgroup(controller: string): boolean {
  const c = v1Controllers().get(controller);
  if (!c) return false;
  try {
    accessSync(c.dir, fsc.W_OK);
    return true;
  } catch {
    return false;
  }
}

let counter = 0;

export async function prepareLimits(limits: ResourceLimits | undefined, tag: string): Promise<PreparedLimits> {
  const applied: AppliedLimits = { notes: [] };
  const created: string[] = [];
  const procs: string[] = [];
  const ulimit: string[] = [];
  let memoryDir: string | undefined;
  const name = `kiln-${tag}-${++counter}`;

  const child = (controller: string): string | undefined => {
    if (!canUseCgroup(controller)) return undefined;
    const dir = join(v1Controllers().get(controller)!.dir, name);
    try {
      if (!created.includes(dir)) {
        mkdirSync(dir);
        created.push(dir);
        procs.push(join(dir, 'cgroup.procs'));
      }
      return dir;
    } catch {
      return undefined;
    }
  };
  const write = (dir: string, file: string, value: string | number): boolean => {
    try {
      writeFileSync(join(dir, file), String(value));
      return true;
    } catch {
      return false;
    }
  };

  if (limits?.memory !== undefined) {
    const dir = child('memory');
    if (dir && write(dir, 'memory.limit_in_bytes', limits.memory)) {
      // Without this, the group could go on in swap; on hosts without swap accounting the file is absent.
      if (existsSync(join(dir, 'memory.memsw.limit_in_bytes'))) write(dir, 'memory.memsw.limit_in_bytes', limits.memory);
      applied.memory = 'cgroup-v1';
      memoryDir = dir;
    } else {
      ulimit.push(`-v=${Math.max(1, Math.floor(limits.memory / 1024))}`);
      applied.memory = 'rlimit';
      applied.notes.push('memory: no writable memory cgroup; limited the address space (RLIMIT_AS) instead, which counts mappings rather than memory in use');
    }
  }
  if (limits?.pidsLimit !== undefined) {
    const dir = child('pids');
    if (dir && write(dir, 'pids.max', limits.pidsLimit)) {
      applied.pids = 'cgroup-v1';
    } else {
      ulimit.push(`-p=${limits.pidsLimit}`);
      applied.pids = 'rlimit';
      applied.notes.push('pids: no writable pids cgroup; used RLIMIT_NPROC, which counts every process of the same uid');
    }
  }
  if (limits?.cpuQuota !== undefined) {
    const dir = child('cpu');
    const period = limits.cpuPeriod ?? 100000;
    if (dir && write(dir, 'cpu.cfs_period_us', period) && write(dir, 'cpu.cfs_quota_us', limits.cpuQuota)) {
      applied.cpu = 'cgroup-v1';
    } else {
      applied.cpu = 'not-applied';
      applied.notes.push('cpu: no writable cpu cgroup, and a CPU quota has no rlimit equivalent; not applied');
    }
  }

  return {
    procs,
    ulimit: ulimit.join(','),
    applied,
    memoryExhausted: () => {
      if (!memoryDir) return false;
      try {
        return Number(readFileSync(join(memoryDir, 'memory.failcnt'), 'utf8')) > 0;
      } catch {
        return false;
      }
    },
    cleanup: async () => {
      for (const dir of created) {
        // The group empties asynchronously after the last task exits; rmdir says EBUSY until then.
        for (let attempt = 0; ; attempt++) {
          try {
            rmdirSync(dir);
            break;
          } catch (err) {
            const code = (err as NodeJS.ErrnoException).code;
            if (code === 'ENOENT') break;
            if (code !== 'EBUSY' || attempt >= 50) break;
            await sleep(10);
          }
        }
      }
    },
  };
}
