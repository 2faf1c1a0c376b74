/**
 * `kiln doctor`: what this host lets kiln do, found by trying it rather than by reading version
 * numbers. Run from outside kiln's namespace, it enters one exactly as kiln would (same mapping, same
 * tools) and, inside it, mounts a real overlay with `userxattr`, makes a whiteout, chowns to an image
 * uid, and starts a nested sandbox's namespaces. Everything missing comes with the command that fixes it.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { release, tmpdir } from 'node:os';
import { join } from 'node:path';
import { removeTree } from '../store/snapshots.js';
import { mappedCount, type IdMapEntry, type SubRange } from './idmap.js';
import { canUseCgroup, v1Controllers } from './limits.js';
import { elfInterpreter, hostTools, missingHostTools } from './tools.js';
import { currentNamespace, isSetuidRoot, planNamespace, spawnInNamespace, userNamespaceBlocker, WANTED_SUBIDS, type NamespacePlan } from './userns.js';

export type CheckStatus = 'ok' | 'warn' | 'fail' | 'info';

export interface DoctorCheck {
  name: string;
  status: CheckStatus;
  detail: string;
  /** Commands or steps that fix it. */
  fix?: string[];
}

export interface DoctorReport {
  checks: DoctorCheck[];
  /** `root`, `rootless` (full mapping), `rootless-single` (only root mapped), or `none` (no sandbox possible). */
  level: 'root' | 'rootless' | 'rootless-single' | 'none';
  snapshotter: 'overlay' | 'copy' | 'none';
  /** One line describing the isolation build steps get. */
  isolation: string;
  canBuild: boolean;
  /** Which `kiln run --network` modes work here, and the private network's tool or why it is missing. */
  networks: NetworkSummary;
}

export interface NetworkSummary {
  host: boolean;
  none: boolean;
  private: boolean;
  tool?: 'pasta' | 'slirp4netns';
  reason?: string;
}

/** What the probe script reports from inside the namespace. */
interface InsideResult {
  uidMap?: string;
  chown?: string;
  overlay?: string;
  whiteout?: string;
  namespaces?: string;
  netns?: string;
  sysfs?: string;
  error?: string;
}

/**
 * Runs inside the namespace (root there), in a scratch directory: the same operations a RUN needs.
 * Each result is a `key=value` line so a failure in one probe does not hide the others.
 */
const INSIDE_SCRIPT = `cd "$1" || exit 1
echo "uidmap=$(tr -s ' ' < /proc/self/uid_map | tr '\\n' ';')"
: > own
if chown 1000:1000 own 2>/dev/null; then echo chown=ok; else echo chown=fail; fi
mkdir -p l/d u w m && echo x > l/f && echo y > l/d/g
if mount -n -t overlay overlay -o lowerdir=l,upperdir=u,workdir=w,userxattr,volatile m 2>err; then echo overlay=volatile
elif rm -rf u/* w/* && mount -n -t overlay overlay -o lowerdir=l,upperdir=u,workdir=w,userxattr m 2>err; then echo overlay=plain
else echo "overlay=fail:$(tail -n1 err)"; fi
if [ -d m/d ] && rm m/f 2>/dev/null && rm -r m/d 2>/dev/null && [ -c u/f ]; then echo whiteout=ok; else echo whiteout=fail; fi
umount m 2>/dev/null
if out=$(unshare --mount --pid --fork --uts --ipc --kill-child -- /bin/sh -c 'mount -t proc proc /proc && { hostname kiln-probe 2>/dev/null || true; }' 2>&1); then echo namespaces=ok; else echo "namespaces=fail:$out"; fi
if out=$(unshare --mount --pid --fork --uts --ipc --net --kill-child -- /bin/sh -c 'mkdir -p s && mount -t sysfs -o ro sysfs s && echo sysfs=ok || echo sysfs=fail; ip link set lo up 2>/dev/null || true' 2>&1); then echo netns=ok; echo "$out" | grep '^sysfs='; else echo "netns=fail:$out"; fi
`;

export interface ProbeOptions {
  env?: NodeJS.ProcessEnv;
}

export async function probeHost(opts: ProbeOptions = {}): Promise<DoctorReport> {
  const env = opts.env ?? process.env;
  const checks: DoctorCheck[] = [];
  const ns = currentNamespace();
  const uid = process.getuid?.() ?? 0;
  const rootMode = ns?.mode === 'root';
  let plan: NamespacePlan | undefined;

  checks.push({ name: 'kernel', status: 'info', detail: `Linux ${release()}` });
  if (rootMode) checks.push({ name: 'user', status: 'ok', detail: 'root: build steps need no user namespace' });
  else if (ns) checks.push({ name: 'user', status: 'ok', detail: `root inside a user namespace (${ns.mapping} mapping)` });
  else checks.push({ name: 'user', status: 'info', detail: `${planNamespace(env).user.name} (uid ${uid}): kiln runs rootless` });

  const missing = missingHostTools();
  if (missing.length) {
    checks.push({
      name: 'tools',
      status: 'fail',
      detail: `missing: ${missing.map(([n]) => n).join(', ')}`,
      fix: [...new Set(missing.map(([, pkg]) => `apt-get install ${pkg.split(' ')[0]}`))],
    });
  } else {
    const tools = hostTools();
    const version = spawnSync(tools.unshare, ['--version'], { encoding: 'utf8' }).stdout.trim().replace(/^unshare from /, '');
    let loaderOk = true;
    let loaderDetail = '';
    try {
      const interp = elfInterpreter(tools.setpriv);
      if (interp) {
        const r = spawnSync(interp, ['--list', tools.setpriv], { encoding: 'utf8', env: {} });
        loaderOk = r.status === 0;
        loaderDetail = loaderOk ? '' : `; ${interp} --list failed: ${r.stderr.trim()}`;
      }
    } catch (err) {
      loaderOk = false;
      loaderDetail = `; ${(err as Error).message}`;
    }
    const optional = [!tools.hostname && 'hostname (sandboxes keep the host name when rootless)', !tools.ip && 'ip (lo stays down with --network=none)'].filter(Boolean);
    checks.push({
      name: 'tools',
      status: !loaderOk ? 'fail' : optional.length ? 'warn' : 'ok',
      detail: `${version}; setpriv, mount, pivot_root, umount, env${optional.length ? `; missing: ${optional.join(', ')}` : ''}${loaderDetail}`,
      ...(optional.length ? { fix: [`apt-get install ${[!tools.hostname && 'hostname', !tools.ip && 'iproute2'].filter(Boolean).join(' ')}`] } : {}),
    });
  }

  let inside: InsideResult = {};
  let namespaceOk = false;
  if (!ns) {
    const blocker = userNamespaceBlocker();
    if (blocker) {
      checks.push({ name: 'user namespaces', status: 'fail', detail: blocker.reason, fix: [`${blocker.fix}   (as root)`, 'or run kiln as root'] });
    } else {
      const max = readTrim('/proc/sys/user/max_user_namespaces');
      checks.push({ name: 'user namespaces', status: 'ok', detail: `available (user.max_user_namespaces = ${max})` });
    }
    plan = planNamespace(env);
    checks.push(rangeCheck('/etc/subuid', plan.subuid, plan.user.name));
    checks.push(rangeCheck('/etc/subgid', plan.subgid, plan.user.name));
    for (const [tool, path] of [
      ['newuidmap', plan.newuidmap],
      ['newgidmap', plan.newgidmap],
    ] as const) {
      if (!path) {
        checks.push({ name: tool, status: 'warn', detail: 'not found on PATH: only a single-uid namespace is possible', fix: ['apt-get install uidmap   (as root)'] });
      } else {
        const setuid = isSetuidRoot(path) || hasFileCaps(path);
        checks.push({
          name: tool,
          status: setuid ? 'ok' : 'warn',
          detail: setuid ? `${path}` : `${path} is neither setuid root nor has file capabilities`,
          ...(setuid ? {} : { fix: [`chmod u+s ${path}   (as root)`] }),
        });
      }
    }
    if (!blocker && !missing.length) {
      inside = await probeInside(plan, env);
      if (inside.error && plan.mapping === 'full') {
        checks.push({ name: 'id mapping', status: 'warn', detail: inside.error, fix: ['check the /etc/subuid and /etc/subgid lines for this user'] });
        plan = { ...plan, mapping: 'single', uidMap: [{ inside: 0, outside: plan.user.uid, count: 1 }], gidMap: [{ inside: 0, outside: plan.user.gid, count: 1 }] };
        inside = await probeInside(plan, env);
      }
      namespaceOk = !inside.error;
      if (inside.error) checks.push({ name: 'namespace entry', status: 'fail', detail: inside.error });
      else {
        const single = plan.mapping === 'single';
        checks.push({
          name: 'id mapping',
          status: single ? 'warn' : 'ok',
          detail: single
            ? `single uid: root → ${plan.user.uid} only (${plan.reason ?? 'mapping refused'}); image owners are kept in kiln's records, RUN steps cannot switch user or chown`
            : `${describeMap(plan.uidMap)}; chown to an image uid ${inside.chown === 'ok' ? 'works' : 'FAILED'}`,
          ...(single && plan.fix ? { fix: plan.fix } : {}),
        });
      }
    }
  } else if (!missing.length) {
    inside = await probeInside(undefined, env);
    namespaceOk = !inside.error;
    if (inside.error) checks.push({ name: 'namespaces', status: 'fail', detail: inside.error });
  }

  // Namespaces, overlay, network.
  let snapshotter: DoctorReport['snapshotter'] = 'none';
  if (namespaceOk) {
    const nsOk = inside.namespaces === 'ok';
    checks.push({
      name: 'sandbox namespaces',
      status: nsOk ? 'ok' : 'fail',
      detail: nsOk ? 'mount, pid, uts, ipc: ok' : `mount/pid/uts/ipc namespaces failed: ${stripPrefix(inside.namespaces)}`,
    });
    const overlay = inside.overlay ?? 'fail:not probed';
    if (overlay.startsWith('fail')) {
      snapshotter = nsOk ? 'copy' : 'none';
      checks.push({
        name: 'overlay',
        status: 'warn',
        detail: `cannot mount overlay with userxattr (${stripPrefix(overlay)}): steps use the copy snapshotter (slower, more disk)`,
        fix: ['use a kernel ≥ 5.11 (overlay in user namespaces with userxattr), or run kiln as root'],
      });
    } else {
      snapshotter = nsOk ? 'overlay' : 'none';
      checks.push({
        name: 'overlay',
        status: inside.whiteout === 'ok' ? 'ok' : 'warn',
        detail: `mounts with userxattr${overlay === 'volatile' ? ', volatile' : ''}; whiteouts ${inside.whiteout === 'ok' ? 'work' : 'FAILED'}`,
      });
    }
    checks.push({
      name: 'network',
      status: inside.netns === 'ok' ? 'ok' : 'warn',
      detail:
        inside.netns === 'ok'
          ? `--network=default|host: host network; --network=none: private namespace with lo${inside.sysfs === 'ok' ? ', sysfs' : ''}`
          : `no private network namespace (${stripPrefix(inside.netns)}): --network=none cannot be honoured`,
    });
  }
  checks.push(cgroupCheck(rootMode, planNamespace(env).user.name));
  const networks = await containerNetworks(namespaceOk && inside.netns === 'ok', rootMode);
  checks.push(networks.check);

  const canBuild = namespaceOk && snapshotter !== 'none' && !missing.length && inside.namespaces === 'ok';
  const level: DoctorReport['level'] = !canBuild ? 'none' : rootMode ? 'root' : (plan?.mapping ?? ns?.mapping) === 'single' ? 'rootless-single' : 'rootless';
  const limits = cgroupWritable() ? 'cgroup v1 limits' : 'rlimit-only limits';
  const isolation = !canBuild
    ? 'none: kiln cannot run build steps on this host'
    : level === 'root'
      ? `root: no user namespace; each RUN gets mount, pid, uts, ipc (and with --network=none, net) namespaces, Docker's default capabilities, no_new_privs; ${snapshotter} snapshots; ${limits}`
      : level === 'rootless'
        ? `rootless: user namespace (${describeMap(plan?.uidMap ?? ns?.uidMap ?? [])}); each RUN gets mount, pid, uts, ipc (and with --network=none, net) namespaces, Docker's default capabilities, no_new_privs; ${snapshotter} snapshots; ${limits}`
        : `rootless, single uid: user namespace mapping only root; image ownership kept in kiln's records; RUN cannot switch user; ${snapshotter} snapshots; ${limits}`;
  return { checks, level, snapshotter, isolation, canBuild, networks: networks.summary };
}

function stripPrefix(v: string | undefined): string {
  return (v ?? '').replace(/^fail:?/, '').trim() || 'unknown error';
}

function readTrim(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8').trim();
  } catch {
    return undefined;
  }
}

function hasFileCaps(path: string): boolean {
  const r = spawnSync('getcap', [path], { encoding: 'utf8' });
  return r.status === 0 && /cap_set[ug]id/.test(r.stdout);
}

function rangeCheck(file: string, ranges: SubRange[], user: string): DoctorCheck {
  const total = ranges.reduce((n, r) => n + r.count, 0);
  if (total === 0) {
    return { name: file, status: 'warn', detail: `no range for ${user}`, fix: [`echo "${user}:100000:${WANTED_SUBIDS}" >> ${file}   (as root; pick a start no other user's range overlaps)`] };
  }
  const text = ranges.map((r) => `${r.start}-${r.start + r.count - 1}`).join(', ');
  if (total < WANTED_SUBIDS) {
    return { name: file, status: 'warn', detail: `${text}: ${total} ids, fewer than ${WANTED_SUBIDS}`, fix: [`give ${user} ${WANTED_SUBIDS} ids in ${file}   (as root)`] };
  }
  return { name: file, status: 'ok', detail: `${text} (${total} ids)` };
}

function describeMap(map: IdMapEntry[]): string {
  return map.map((e) => (e.count === 1 ? `${e.inside} → ${e.outside}` : `${e.inside}-${e.inside + e.count - 1} → ${e.outside}-${e.outside + e.count - 1}`)).join(', ');
}

function cgroupWritable(): boolean {
  return ['memory', 'pids', 'cpu'].some((c) => canUseCgroup(c));
}

function cgroupCheck(rootMode: boolean, user: string): DoctorCheck {
  const controllers = v1Controllers();
  const usable = ['memory', 'pids', 'cpu'].filter((c) => canUseCgroup(c));
  const present = ['memory', 'pids', 'cpu'].filter((c) => controllers.has(c));
  const v2 = readTrim('/sys/fs/cgroup/unified/cgroup.controllers') ?? readTrim('/sys/fs/cgroup/cgroup.controllers');
  const v2note = v2 !== undefined ? `; cgroup v2 controllers: ${v2 || 'none'} (not used)` : '';
  if (usable.length === 3) return { name: 'cgroups', status: 'ok', detail: `v1 memory, pids, cpu: per-step limits${v2note}` };
  if (present.length === 0) {
    return { name: 'cgroups', status: 'info', detail: `no v1 memory/pids/cpu controllers: limits fall back to rlimits (memory, pids; no CPU quota)${v2note}` };
  }
  const fix = rootMode
    ? undefined
    : [
        `as root, delegate v1 groups: for c in ${present.join(' ')}; do mkdir -p /sys/fs/cgroup/$c/kiln-${user} && chown -R ${user} /sys/fs/cgroup/$c/kiln-${user}; done`,
        `then start kiln from a shell inside them: for c in ${present.join(' ')}; do echo $$ > /sys/fs/cgroup/$c/kiln-${user}/cgroup.procs; done`,
      ];
  return {
    name: 'cgroups',
    status: 'info',
    detail: `v1 ${present.join(', ')} ${usable.length ? `(writable: ${usable.join(', ')})` : 'not writable'}: limits fall back to rlimits${v2note}`,
    ...(fix ? { fix } : {}),
  };
}

/**
 * The networks containers can have: host always, none with a network namespace, private with pasta
 * or slirp4netns and a usable /dev/net/tun. As real root the private network is tried for real (a
 * throwaway namespace gets its eth0); otherwise the probe's checks are what kiln would meet.
 */
async function containerNetworks(netns: boolean, rootMode: boolean): Promise<{ check: DoctorCheck; summary: NetworkSummary }> {
  const { attachPrivateNetwork, probePrivateNetwork } = await import('./network.js');
  const probe = await probePrivateNetwork();
  let privateOk = probe.available;
  let reason = probe.reason;
  if (probe.available && rootMode) {
    const target = spawn(hostTools().unshare, ['--net', 'sleep', '30'], { stdio: 'ignore' });
    try {
      await new Promise<void>((resolve, reject) => {
        target.once('spawn', resolve);
        target.once('error', reject);
      });
      await waitForExec(target.pid!, 'sleep');
      const net = await attachPrivateNetwork({ pid: target.pid! }, { publish: [], timeoutMs: 10_000 });
      await net.close();
    } catch (err) {
      privateOk = false;
      reason = (err as Error).message;
    } finally {
      target.kill('SIGKILL');
    }
  }
  const others = (probe.tools ?? []).filter((t) => t !== probe.tool);
  const modes = ['host', ...(netns ? ['none'] : []), ...(privateOk ? ['private'] : [])].join(', ');
  const summary: NetworkSummary = { host: true, none: netns, private: privateOk, ...(privateOk ? { tool: probe.tool } : { reason }) };
  if (privateOk) {
    return {
      summary,
      check: {
        name: 'container networks',
        status: 'ok',
        detail: `${modes}; private uses ${probe.tool}${others.length ? ` (${others.join(', ')} also installed)` : ''}, with outbound access and -p`,
      },
    };
  }
  return {
    summary,
    check: {
      name: 'container networks',
      status: 'warn',
      detail: `${modes}; no private network (-p needs it): ${reason}`,
      ...(probe.hint ? { fix: [probe.hint] } : {}),
    },
  };
}

/** Waits until `pid` runs `comm` (unshare has made the namespace and exec'd its command). */
async function waitForExec(pid: number, comm: string): Promise<void> {
  for (let i = 0; i < 200; i++) {
    if (readTrim(`/proc/${pid}/comm`) === comm) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`unshare --net did not start (${pid})`);
}

async function probeInside(plan: NamespacePlan | undefined, env: NodeJS.ProcessEnv): Promise<InsideResult> {
  const dir = mkdtempSync(join(tmpdir(), 'kiln-doctor-'));
  try {
    const argv = ['/bin/sh', '-c', INSIDE_SCRIPT, 'kiln-doctor', dir];
    let child: ChildProcess;
    const probeEnv = { PATH: `${env.PATH ?? ''}:/usr/local/sbin:/usr/sbin:/sbin:/usr/bin:/bin` };
    if (plan) {
      try {
        child = await spawnInNamespace(argv, { plan, env: probeEnv, stdio: ['ignore', 'pipe', 'pipe'] });
      } catch (err) {
        return { error: (err as Error).message };
      }
    } else {
      child = spawn(hostTools().unshare, ['--mount', '--', ...argv], { env: probeEnv, stdio: ['ignore', 'pipe', 'pipe'] });
    }
    const { stdout, stderr, code } = await collect(child);
    const result: InsideResult = {};
    for (const line of stdout.split('\n')) {
      const eq = line.indexOf('=');
      if (eq > 0) (result as Record<string, string>)[line.slice(0, eq)] = line.slice(eq + 1);
    }
    if (!result.uidMap && (code !== 0 || !stdout)) result.error = `cannot enter the namespace: ${stderr.trim() || `exit status ${code}`}`;
    if (plan && result.uidMap && plan.mapping === 'full') {
      const lines = result.uidMap.split(';').filter(Boolean);
      if (mappedCount(lines.map((l) => {
        const [a, b, c] = l.trim().split(' ').map(Number);
        return { inside: a!, outside: b!, count: c! };
      })) <= 1) result.error = 'the namespace got a single-uid map';
    }
    return result;
  } finally {
    // removeTree copes with overlay's work/work, which is mode 000.
    await removeTree(dir);
  }
}

/** The child's output and status; a probe that hangs is killed after `timeoutMs` so doctor always answers. */
function collect(child: ChildProcess, timeoutMs = 20_000): Promise<{ stdout: string; stderr: string; code: number | null }> {
  return new Promise((resolve) => {
    let stdout = '';
    let stderr = '';
    const timer = setTimeout(() => {
      stderr += `the probe did not finish within ${timeoutMs / 1000} s`;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.on('close', () => clearTimeout(timer));
    child.stdout?.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', (err) => resolve({ stdout, stderr: err.message, code: -1 }));
    child.on('close', (code) => resolve({ stdout, stderr, code }));
  });
}

/** The report as text, one check per line, fixes indented under it. */
export function formatReport(report: DoctorReport): string {
  const mark: Record<CheckStatus, string> = { ok: 'ok  ', warn: 'warn', fail: 'FAIL', info: '--  ' };
  const width = Math.max(...report.checks.map((c) => c.name.length));
  const lines: string[] = [];
  for (const c of report.checks) {
    lines.push(`${mark[c.status]}  ${c.name.padEnd(width)}  ${c.detail}`);
    for (const f of c.fix ?? []) lines.push(`${' '.repeat(width + 8)}fix: ${f}`);
  }
  lines.push('');
  lines.push(`isolation: ${report.isolation}`);
  return `${lines.join('\n')}\n`;
}

