/**
 * The CI case across users: root builds and exports (`mode=max,mounts=true`) to the registry; an
 * unprivileged user (`runuser -u kilnbuild`, kiln's rootless namespace) with an empty store imports
 * it and gets every step cached and the same image, and the cache mount's files in its own store.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { BUSYBOX_IMAGE, busyboxImportEnv, busyboxStore, busyboxTar, type BusyboxStore } from '../helpers/busybox.js';
import { copyFixture, expectOk, inspect, kilnRun } from '../helpers/build.js';
import { startRegistry, type RegistryServer } from '../helpers/registry/index.js';

const USER = 'kilnbuild';
const EPOCH = ['--build-arg', 'SOURCE_DATE_EPOCH=1700000000'];

let reg: RegistryServer;
let base: BusyboxStore;
let userDir: string;

beforeAll(async () => {
  if (process.getuid?.() !== 0) throw new Error('this test runs as root: it builds as root and as the unprivileged user kilnbuild');
  if (spawnSync('id', ['-u', USER]).status !== 0) execFileSync('useradd', ['-m', '-s', '/bin/sh', USER], { stdio: 'ignore' });
  reg = await startRegistry({ mode: 'none' });
  base = await busyboxStore();
  userDir = await fsp.mkdtemp(join(tmpdir(), 'kiln-cache-rootless-'));
  await fsp.copyFile(await busyboxTar(), join(userDir, 'busybox.tar'));
  await copyFixture('cache', join(userDir, 'ctx'));
  execFileSync('chown', ['-R', `${USER}:${USER}`, userDir]);
  expectOk(await kilnRun(join(userDir, 'store'), ['import', join(userDir, 'busybox.tar'), BUSYBOX_IMAGE], { user: USER, env: busyboxImportEnv() }), 'import as the user');
}, 180_000);

afterAll(async () => {
  await reg?.stop();
  await base?.cleanup();
  if (userDir) await fsp.rm(userDir, { recursive: true, force: true });
});

it('an unprivileged user with an empty store gets every step of a cache root exported', async () => {
  const ctx = join(userDir, 'ctx');
  const ref = `${reg.host}/ci/app:cache`;
  expectOk(await kilnRun(base.root, ['build', '-q', ...EPOCH, '-t', 'app:1', '--cache-to', `type=registry,ref=${ref},mode=max,mounts=true`, ctx]), 'build as root');
  const userStore = join(userDir, 'store');
  const r = expectOk(await kilnRun(userStore, ['build', '--progress', 'plain', ...EPOCH, '-t', 'app:1', '--cache-from', ref, ctx], { user: USER }), 'build as the user');
  expect(r.stderr).toMatch(/8\/8 steps cached/);
  expect(r.stderr).toMatch(/restored cache mount kiln-fixture-cache/);
  expect((await inspect(userStore, 'app:1')).Id).toBe((await inspect(base.root, 'app:1')).Id);
  // The mount holds what root's build wrote into it, readable by the user's next RUN.
  const runs = await fsp.readdir(join(userStore, 'cache', 'mounts')).then((ids) => ids.find((i) => i.includes('kiln-fixture-cache')));
  expect(runs).toBeDefined();
  expect((await fsp.readFile(join(userStore, 'cache', 'mounts', runs!, 'data', 'runs.txt'), 'utf8')).trim()).toMatch(/^[0-9a-f]{32}/);
}, 120_000);
