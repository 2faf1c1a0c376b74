/**
 * The same fixtures built by root and by an unprivileged user (`runuser -u kilnbuild`, in kiln's
 * rootless user namespace): with SOURCE_DATE_EPOCH set, both give the same image, layer for layer,
 * owners and modes included. The test runs as root: it creates the user (Debian's useradd gives it
 * a subordinate id range) and installs uidmap when they are missing.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { REPO_ROOT } from '../conformance/harness.js';
import { busyboxStore, busyboxTar, busyboxImportEnv, BUSYBOX_IMAGE, type BusyboxStore } from '../helpers/busybox.js';
import { copyFixture, expectOk, inParallel, kilnRun, readOciLayout, text, type OciImage } from '../helpers/build.js';
import { KILN_BIN } from '../helpers/kiln.js';

const USER = 'kilnbuild';
const EPOCH = '1700000000';
const RUN_ID = 'rootless-parity';

let root: BusyboxStore;
let userDir: string;
let uid: number;
let gid: number;

/** The fixture builds compared, with the flags each needs. */
const BUILDS: Array<{ name: string; fixture: string; args: (dir: string) => string[] }> = [
  { name: 'config', fixture: 'config', args: () => ['--target', 'shell'] },
  { name: 'files', fixture: 'files', args: () => [] },
  { name: 'run', fixture: 'run', args: (dir) => ['--secret', `id=token,src=${join(dir, 'token')}`, '--secret', 'id=apikey,env=API_KEY'] },
  { name: 'stages', fixture: 'stages', args: () => ['--build-arg', `RUN_ID=${RUN_ID}`] },
];

const images: Record<string, { root: OciImage; user: OciImage; rootId: string; userId: string }> = {};

function ensureUser(): void {
  if (process.getuid?.() !== 0) throw new Error('the rootless build tests run as root: they create the unprivileged user kilnbuild and build as it');
  const has = (p: string) => spawnSync('dpkg-query', ['-W', '-f=${Status}', p], { encoding: 'utf8' }).stdout.includes('install ok installed');
  if (!has('uidmap')) {
    const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
    execFileSync('apt-get', ['-o', 'DPkg::Lock::Timeout=600', 'update', '-qq'], { env, stdio: 'ignore' });
    execFileSync('apt-get', ['-o', 'DPkg::Lock::Timeout=600', 'install', '-y', '-qq', 'uidmap'], { env, stdio: 'ignore' });
  }
  if (spawnSync('id', ['-u', USER]).status !== 0) execFileSync('useradd', ['-m', '-s', '/bin/sh', USER], { stdio: 'ignore' });
  uid = Number(execFileSync('id', ['-u', USER], { encoding: 'utf8' }).trim());
  gid = Number(execFileSync('id', ['-g', USER], { encoding: 'utf8' }).trim());
  for (const file of ['/etc/subuid', '/etc/subgid']) {
    const text = spawnSync('cat', [file], { encoding: 'utf8' }).stdout;
    if (!text.split('\n').some((l) => l.startsWith(`${USER}:`))) {
      throw new Error(`${USER} has no range in ${file}: useradd normally adds one (SUB_UID_MIN in /etc/login.defs); add one with usermod --add-subuids`);
    }
  }
  // The user runs kiln from this checkout: every directory on the way must let it in.
  const probe = spawnSync('runuser', ['-u', USER, '--', 'test', '-r', KILN_BIN, '-a', '-r', join(REPO_ROOT, 'dist/cli/main.js')]);
  if (probe.status !== 0) throw new Error(`${USER} cannot read ${REPO_ROOT}: make the checkout readable by other users (chmod o+rX on it and its parents)`);
}

beforeAll(async () => {
  ensureUser();
  root = await busyboxStore();
  userDir = await fsp.mkdtemp(join(tmpdir(), 'kiln-rootless-'));
  // The user's store is imported from a copy of the base rootfs it can surely read.
  await fsp.copyFile(await busyboxTar(), join(userDir, 'busybox.tar'));
  await fsp.writeFile(join(userDir, 'token'), 'rootless-token\n');
  for (const b of BUILDS) await copyFixture(b.fixture, join(userDir, `ctx-${b.name}`));
  execFileSync('chown', ['-R', `${uid}:${gid}`, userDir]);
  const userRoot = join(userDir, 'store');
  expectOk(await kilnRun(userRoot, ['import', join(userDir, 'busybox.tar'), BUSYBOX_IMAGE], { user: USER, env: busyboxImportEnv() }), 'import as the user');

  const env = { ...process.env, SOURCE_DATE_EPOCH: EPOCH, API_KEY: 'rootless-api-key' };
  const jobs = BUILDS.flatMap((b) =>
    (['root', 'user'] as const).map((who) => async () => {
      const out = who === 'root' ? join(root.dir, `oci-${b.name}`) : join(userDir, `oci-${b.name}`);
      const iid = `${out}.iid`;
      const args = ['build', '-q', ...b.args(userDir), '--iidfile', iid, '-o', `type=oci,dest=${out},tar=false`, join(userDir, `ctx-${b.name}`)];
      const r = await kilnRun(who === 'root' ? root.root : userRoot, args, who === 'user' ? { user: USER, env } : { env });
      expectOk(r, `${b.name} as ${who}`);
      return { name: b.name, who, oci: await readOciLayout(out), id: await fsp.readFile(iid, 'utf8') };
    }),
  );
  for (const r of await inParallel(3, jobs)) {
    const entry = (images[r.name] ??= {} as (typeof images)[string]);
    if (r.who === 'root') Object.assign(entry, { root: r.oci, rootId: r.id });
    else Object.assign(entry, { user: r.oci, userId: r.id });
  }
}, 300_000);

afterAll(async () => {
  await root?.cleanup();
  if (userDir) await fsp.rm(userDir, { recursive: true, force: true });
});

describe('root and rootless builds give the same image', () => {
  for (const b of BUILDS) {
    it(`${b.name}: same layers, same config`, () => {
      const { root: r, user: u, rootId, userId } = images[b.name]!;
      expect(u.config.rootfs.diff_ids).toEqual(r.config.rootfs.diff_ids);
      expect(u.manifest.layers.map((l) => l.digest)).toEqual(r.manifest.layers.map((l) => l.digest));
      expect(userId).toBe(rootId);
    });
  }

  it('owners and modes survive the user namespace', () => {
    const files = images.files!.user;
    const merged = new Map(files.layers.flatMap((l) => [...l]));
    expect(merged.get('dest/owned-by-name.txt')).toMatchObject({ uid: 1234, gid: 2345, mode: 0o644 });
    expect(merged.get('dest/owned-by-id.txt')).toMatchObject({ uid: 1000, gid: 1001, mode: 0o640 });
    expect(merged.get('dest/unpacked/bundle/bin/tool')).toMatchObject({ uid: 1000, gid: 1000, mode: 0o755 });
    const run = new Map(images.run!.user.layers.flatMap((l) => [...l]));
    expect(run.get('tmp/id.txt')).toMatchObject({ uid: 65534, gid: 65534 });
    expect(text(run, 'tmp/id.txt')).toBe('uid=65534(nobody) gid=65534(nobody) groups=65534(nobody)\n');
    expect(text(run, 'net-none.txt')).toBe('lo\n');
    expect(text(run, 'secret-file-len.txt')).toBe('15\n');
    const stages = new Map(images.stages!.user.layers.flatMap((l) => [...l]));
    expect(text(stages, 'left.txt')).toBe('together\n');
    expect(text(stages, 'same-runs.txt')).toBe('1\n');
  });
});
