/**
 * End-to-end sandbox tests: the fixtures of fixtures.ts run as real root, as an unprivileged user
 * with a subordinate id range (kiln's user namespace, full mapping), and as a user without one
 * (single-uid fallback), each in its own process as the CLI would be. The runs must agree on the
 * layers they produce, and each must refuse what a sandbox refuses.
 *
 * These need root (to create the users) and a kernel with user namespaces and overlay; on the
 * machines kiln is tested on both hold, so nothing here is skipped there.
 */
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { chownSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { REPO_ROOT } from '../conformance/harness.js';
import { busyboxTar } from '../helpers/busybox.js';
import { KILN_BIN, kiln } from '../helpers/kiln.js';
import { userNamespaceBlocker } from '../../src/sandbox/userns.js';
import type { FixtureReport, ScenarioResult, TarEntryInfo } from './fixtures.js';
import { ensurePackages, ensureUsers } from './users.js';

const blocker = userNamespaceBlocker();
const describeSandbox = blocker ? describe.skip : describe;
if (blocker) process.stderr.write(`sandbox tests skipped: ${blocker.reason}\n`);

function runFixtures(work: string, user?: string, only?: string[]): Promise<FixtureReport> {
  const script = join(REPO_ROOT, 'test/sandbox/fixtures.ts');
  const node = [process.execPath, '--import', 'tsx', script, work, ...(only ? [only.join(',')] : [])];
  const argv = user ? ['runuser', '-u', user, '--', ...node] : node;
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0]!, argv.slice(1), { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('close', (code) => {
      if (code !== 0) return reject(new Error(`fixtures as ${user ?? 'root'} exited ${code}: ${err}`));
      try {
        const report = JSON.parse(out.trim().split('\n').pop()!) as FixtureReport;
        (report as FixtureReport & { stderr: string }).stderr = err;
        resolve(report);
      } catch (e) {
        reject(new Error(`fixtures as ${user ?? 'root'} printed no report: ${(e as Error).message}\n${out}\n${err}`));
      }
    });
  });
}

const MODES = ['root', 'rootless'] as const;
type Mode = (typeof MODES)[number];

describeSandbox('RUN sandboxes as root and rootless', () => {
  const reports = {} as Record<Mode | 'single', FixtureReport & { stderr: string }>;
  const dirs: string[] = [];
  let users: { user: string; nosub: string };

  beforeAll(async () => {
    ensurePackages();
    users = ensureUsers();
    await busyboxTar();
    const mk = (owner?: string) => {
      const dir = mkdtempSync(join(tmpdir(), 'kiln-sbx-'));
      dirs.push(dir);
      if (owner) chownSync(dir, Number(spawnId(owner, '-u')), Number(spawnId(owner, '-g')));
      return dir;
    };
    const [root, rootless, single] = await Promise.all([
      runFixtures(join(mk(), 'w')),
      runFixtures(join(mk(users.user), 'w'), users.user),
      runFixtures(join(mk(users.nosub), 'w'), users.nosub, ['ownership', 'secrets', 'cache', 'user', 'refused']),
    ]);
    reports.root = root as FixtureReport & { stderr: string };
    reports.rootless = rootless as FixtureReport & { stderr: string };
    reports.single = single as FixtureReport & { stderr: string };
  }, 600_000);

  afterAll(() => {
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  const scenario = (mode: Mode | 'single', name: string): ScenarioResult => {
    const s = reports[mode].scenarios[name];
    expect(s, `${name} did not run as ${mode}`).toBeDefined();
    expect(s!.error, `${name} as ${mode}`).toBeUndefined();
    return s!;
  };

  it('runs as real root without a user namespace, and rootless in kiln\'s namespace with the subordinate range', () => {
    expect(reports.root.namespace).toEqual({ mode: 'root', mapping: 'host', squashed: false });
    expect(reports.rootless.namespace).toEqual({ mode: 'rootless', mapping: 'full', squashed: false });
    expect(reports.rootless.uid).not.toBe(0);
    expect(reports.single.namespace).toEqual({ mode: 'rootless', mapping: 'single', squashed: true });
    expect(reports.single.stderr).toMatch(/single-uid user namespace.*\n\s+fix: echo "kiln-sbx-nosub:\d+:65536" >> \/etc\/subuid/);
  });

  it('gives byte-identical layers as root and rootless: owners, modes, whiteouts, opaque directories, hardlinks', () => {
    const root = scenario('root', 'layers');
    const user = scenario('rootless', 'layers');
    const r1 = root.step1 as { diffID: string; entries: TarEntryInfo[]; snapshotter: string };
    const u1 = user.step1 as typeof r1;
    expect(u1.entries).toEqual(r1.entries);
    expect(u1.diffID).toBe(r1.diffID);
    expect((user.step2 as { diffID: string }).diffID).toBe((root.step2 as { diffID: string }).diffID);
    expect(r1.snapshotter).toBe('overlay');
    const byName = new Map(r1.entries.map((e) => [e.name, e]));
    expect(byName.get('bin/.wh.ls')).toMatchObject({ type: 'file', size: 0 });
    expect(byName.get('home/u/')).toMatchObject({ type: 'directory', mode: 0o700, uid: 1000, gid: 1000 });
    expect(byName.get('home/u/private')).toMatchObject({ mode: 0o600, uid: 1000, gid: 1000 });
    expect(byName.get('srv/data/b')).toMatchObject({ uid: 65534, gid: 65534 });
    expect(byName.get('usr/bin/tool')).toMatchObject({ mode: 0o4755 });
    expect(byName.get('x-hardlink')).toMatchObject({ type: 'link', linkname: 'x' });
    expect(byName.get('srv/link')).toMatchObject({ type: 'symlink', linkname: '../x' });
    expect(byName.get('srv/fifo')).toMatchObject({ type: 'fifo' });
    // No mount point the sandbox made (proc, dev, resolv.conf, hosts) reaches the layer.
    expect([...byName.keys()].filter((n) => /^(proc|dev|sys|run)\b|resolv\.conf|etc\/hosts/.test(n))).toEqual([]);
    const s2 = new Map((root.step2 as { entries: TarEntryInfo[] }).entries.map((e) => [e.name, e]));
    expect(s2.get('srv/data/.wh..wh..opq')).toBeDefined();
    expect(s2.get('.wh.x')).toBeDefined();
    expect(s2.get('home/u/private')).toMatchObject({ uid: 1000, gid: 1000, mode: 0o600 });
  });

  it.each(MODES)('the copy snapshotter gives the same layer as overlay (%s)', (mode) => {
    const s = scenario(mode, 'copy');
    expect(s.copySnapshotter).toBe('copy');
    expect(s.copy).toEqual(s.overlay);
    expect(s.copyDiffID).toBe(s.overlayDiffID);
  });

  it.each(MODES)('resolves USER from the image (%s)', (mode) => {
    const out = scenario(mode, 'user').out as Record<string, string>;
    // The kernel keeps supplementary groups sorted; the primary group is among them, as in BuildKit.
    expect(out.u).toBe('uid=1000(u) gid=1000(u) groups=10(wheel),1000(u)\nHOME=/home/u\n/home/u/work');
    expect(out['1000']).toBe(out.u);
    expect(out['1000:10']).toMatch(/^uid=1000\(u\) gid=10\(wheel\) groups=10\(wheel\)\n/);
    expect(out['u:wheel']).toBe(out['1000:10']);
    expect(out['4242']).toBe('uid=4242 gid=0(root) groups=0(root)\nHOME=/\n/home/u/work');
    expect(out.nosuchuser).toBe('RUN_USER: unable to find user nosuchuser: no matching entries in passwd file');
  });

  it.each(MODES)('refuses host files, host processes, mounts and writes through read-only binds (%s)', (mode) => {
    const s = scenario(mode, 'refused');
    const tries = s.tries as Record<string, { exit: number | 'ok'; out: string }>;
    expect(tries.readHostFile!.exit).not.toBe('ok');
    expect(tries.readHostFile!.out).not.toContain('HOST-SECRET-CONTENT');
    expect(tries.listRoot!.out.split('\n').filter(Boolean)).toEqual(['bin', 'dev', 'etc', 'linuxrc', 'proc', 'root', 'sbin', 'sys', 'tmp', 'usr']);
    // A fresh PID namespace: the step's shell is PID 1 and nothing of the host is visible.
    const pids = tries.processes!.out.split('\n')[0]!.trim().split(/\s+/).map(Number);
    expect(pids[0]).toBe(1);
    expect(Math.max(...pids)).toBeLessThan(20);
    expect(tries.processes!.out).toContain('/bin/sh -c ls /proc');
    expect(tries.mount!.exit).not.toBe('ok');
    expect(tries.mount!.out).not.toContain('MOUNTED');
    expect(tries.remount!.exit).not.toBe('ok');
    expect(tries.caps!.out).toContain('CapEff:\t00000000a80425fb');
    expect(tries.caps!.out).toContain('CapBnd:\t00000000a80425fb');
    expect(tries.caps!.out).toContain('NoNewPrivs:\t1');
    expect(tries.roBindWrite!.exit).not.toBe('ok');
    expect(tries.roBindWrite!.out).toContain('Read-only file system');
    expect(tries.rwBindWrite!.exit).toBe('ok');
    expect(tries.rwBindWrite!.out).toBe('changed\n');
    expect(s.hostDir).toEqual({ files: ['kept'], kept: 'original\n' });
  });

  it.each([...MODES, 'single'] as const)('keeps secrets out of layers and logs (%s)', (mode) => {
    const s = scenario(mode, 'secrets');
    expect(s.hashes).toEqual([s.expectedHash, s.expectedHash]);
    expect(s.layerHasValue).toBe(false);
    expect(s.logHasValue).toBe(false);
    expect(s.log).toContain('****');
    expect(s.log).toMatch(/-r--r-----\s+1 root\s+root\s+\d+ .* \/run\/secrets\/tok/);
    expect((s.layerNames as string[]).sort()).toEqual(['envhash', 'hash']);
    expect(s.missing).toBe('RUN_MOUNT: secret absent not found');
  });

  it.each(MODES)('--network=none has only lo, default shares the host network (%s)', (mode) => {
    const s = scenario(mode, 'network');
    expect(s.none).toEqual(['lo']);
    expect(s.noneText).toMatch(/inet 127\.0\.0\.1/);
    expect(s.noneText).toMatch(/<LOOPBACK,UP,LOWER_UP>/);
    expect((s.host as string[]).length).toBeGreaterThan(1);
  });

  it.each([...MODES, 'single'] as const)('cache mounts persist across steps and never enter a layer (%s)', (mode) => {
    const s = scenario(mode, 'cache');
    expect(s.firstEmpty).toBe(true);
    expect(s.firstEntries).toEqual([]);
    expect(s.secondEmpty).toBe(true);
    expect(s.secondOut).toBe('persisted\nf\nsub');
  });

  it.each(MODES)('mounts tmpfs with its size (%s)', (mode) => {
    const s = scenario(mode, 'tmpfs');
    expect(s.out).toMatch(/^tmpfs \/scratch tmpfs rw,nosuid,nodev,.*size=1024k/);
    expect(s.empty).toBe(true);
  });

  it.each(MODES)('mounts an image of 121 layers with overlay (%s)', (mode) => {
    const s = scenario(mode, 'layers120');
    expect(s.lowers).toBe(121);
    expect(s.snapshotter).toBe('overlay');
    expect(s.warnings).toEqual([]);
    expect(s.out).toEqual(['0', '119', '120']);
  });

  it.each(MODES)('reports a failing command with its status and last lines (%s)', (mode) => {
    const s = scenario(mode, 'failure');
    expect(s.code).toBe('RUN_FAILED');
    expect(s.status).toBe(3);
    expect(s.message).toBe('process "/bin/sh -c for i in $(seq 1 30); do echo line$i; done; echo oops >&2; exit 3" did not complete successfully: exit code: 3');
    expect((s.tail as string[]).length).toBe(20);
    expect((s.tail as string[]).slice(-2)).toEqual(['line30', 'oops']);
  });

  it('applies limits with cgroups as root and rlimits rootless, and says which', () => {
    const root = scenario('root', 'limits');
    expect(root.applied).toEqual({ memory: 'cgroup-v1', pids: 'cgroup-v1', cpu: 'cgroup-v1', notes: [] });
    expect(root.hog).toMatch(/^RUN_FAILED/);
    const user = scenario('rootless', 'limits');
    expect(user.applied).toMatchObject({ memory: 'rlimit', pids: 'rlimit', cpu: 'not-applied' });
    expect((user.applied as { notes: string[] }).notes).toHaveLength(3);
    expect(user.out).toEqual([expect.stringMatching(/^Max processes\s+64\s+64/), expect.stringMatching(/^Max address space\s+67108864\s+67108864/)]);
    expect(user.hog).toMatch(/^RUN_FAILED/);
  });

  it.each(MODES)('cancelling a step kills its processes and leaves no mount or scratch directory (%s)', (mode) => {
    const s = scenario(mode, 'abort');
    expect(s.started).toBe(true);
    expect(s.outcome).toBe('ABORTED');
    expect(s.survivors).toEqual([]);
    expect(s.mounts).toEqual([]);
    expect(s.leftoverRunDirs).toEqual([]);
  });

  it('keeps image owners in the single-uid namespace: the same layer as root, and USER is refused', () => {
    const root = scenario('root', 'ownership');
    const single = scenario('single', 'ownership');
    const rootless = scenario('rootless', 'ownership');
    expect(single.entries).toEqual(root.entries);
    expect(single.diffID).toBe(root.diffID);
    expect(rootless.diffID).toBe(root.diffID);
    expect(root.entries).toContainEqual(expect.objectContaining({ name: 'home/u/file', uid: 1000, gid: 1000, mode: 0o640 }));
    expect(root.entries).toContainEqual(expect.objectContaining({ name: 'newfile', uid: 0, gid: 0 }));
    expect(root.asUser).toBe('ran');
    expect(single.asUser).toBe('RUN_USER');
    const user = scenario('single', 'user').out as Record<string, string>;
    expect(user.u).toMatch(/^ERROR USER u \(uid 1000, gid 1000\) cannot run/);
  });

  it.each(['single'] as const)('the single-uid namespace still refuses what a sandbox refuses (%s)', (mode) => {
    const tries = scenario(mode, 'refused').tries as Record<string, { exit: number | 'ok'; out: string }>;
    expect(tries.readHostFile!.exit).not.toBe('ok');
    expect(tries.mount!.exit).not.toBe('ok');
    expect(tries.roBindWrite!.exit).not.toBe('ok');
  });
});

function spawnId(user: string, flag: '-u' | '-g'): string {
  return execFileSync('id', [flag, user], { encoding: 'utf8' }).trim();
}

/** `kiln ARGS` as `user` (runuser gives it the user's own groups, as a login would). */
function kilnAs(user: string, args: string[], env: Record<string, string> = {}) {
  const r = spawnSync('runuser', ['-u', user, '--', 'env', ...Object.entries(env).map(([k, v]) => `${k}=${v}`), process.execPath, KILN_BIN, ...args], {
    encoding: 'utf8',
    cwd: tmpdir(),
  });
  return { status: r.status, stdout: String(r.stdout ?? ''), stderr: String(r.stderr ?? '') };
}

describeSandbox('kiln doctor', () => {
  let users: { user: string; nosub: string };
  beforeAll(() => {
    ensurePackages();
    users = ensureUsers();
  });

  it('as root: exits 0 and prints the isolation level', () => {
    const r = kiln(['doctor']);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/^ok\s+overlay\s+mounts with userxattr/m);
    expect(r.stdout).toMatch(/^isolation: root: no user namespace; each RUN gets mount, pid, uts, ipc/m);
  });

  it('as an unprivileged user: exits 0 and prints the rootless isolation with the id map', () => {
    const r = kilnAs(users.user, ['doctor']);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^ok\s+\/etc\/subuid\s+\d+-\d+ \(65536 ids\)/m);
    expect(r.stdout).toMatch(/^ok\s+id mapping\s+0 → \d+, 1-65536 → \d+-\d+; chown to an image uid works/m);
    expect(r.stdout).toMatch(/^isolation: rootless: user namespace \(0 → \d+, 1-65536 → /m);
  });

  it('without newuidmap on PATH: still exits 0, warns, and names the fix', () => {
    const r = kilnAs(users.user, ['doctor'], { PATH: '/nonexistent' });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^warn\s+newuidmap\s+not found on PATH/m);
    expect(r.stdout).toContain('fix: apt-get install uidmap');
    expect(r.stdout).toMatch(/^isolation: rootless, single uid:/m);
  });

  it('JSON output carries the same verdict', () => {
    const r = kiln(['doctor', '--json']);
    expect(r.status).toBe(0);
    const report = JSON.parse(r.stdout) as { level: string; canBuild: boolean; snapshotter: string };
    expect(report).toMatchObject({ level: 'root', canBuild: true, snapshotter: 'overlay' });
  });
});

describeSandbox('kiln unshare', () => {
  let users: { user: string; nosub: string };
  beforeAll(() => {
    ensurePackages();
    users = ensureUsers();
  });

  it('runs a command as root in kiln\'s namespace with KILN_ROOT exported, and passes its exit status', () => {
    const r = kilnAs(users.user, ['--root', '/tmp/kiln-unshare-root', 'unshare', 'sh', '-c', 'id -u; wc -l < /proc/self/uid_map; echo "$KILN_ROOT $KILN_USERNS"; exit 7']);
    expect(r.status).toBe(7);
    expect(r.stdout.split('\n')).toEqual(['0', '2', '/tmp/kiln-unshare-root full', '']);
  });
});
