/**
 * The stage graph end to end: ONBUILD triggers of an image built here and then used as a base,
 * `--target` building only what the target needs (an unused failing stage never runs), independent
 * stages running at the same time, identical steps running once, the platform ARGs, FROM scratch,
 * and the cache switches (`--no-cache`, `--no-cache-filter`).
 */
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { busyboxStore, type BusyboxStore } from '../helpers/busybox.js';
import { copyFixture, expectOk, hostArch, inspect, kilnRun, readTar, text, type TarEntry } from '../helpers/build.js';
import type { RunResult } from '../helpers/kiln.js';

let base: BusyboxStore;
let onbuildCtx: string;
let stagesCtx: string;

beforeAll(async () => {
  base = await busyboxStore();
  onbuildCtx = await copyFixture('onbuild', join(base.dir, 'ctx-onbuild'));
  stagesCtx = await copyFixture('stages', join(base.dir, 'ctx-stages'));
}, 120_000);

afterAll(async () => {
  await base?.cleanup();
});

function build(args: string[]) {
  return kilnRun(base.root, ['build', '--progress', 'plain', ...args]);
}

/** Lines of plain progress output naming a step of `stage` (`#7 [left 2/2] RUN ...`). */
function stepLines(stderr: string, stage: string): string[] {
  return stderr.split('\n').filter((l) => new RegExp(`^#\\d+ \\[${stage}[ \\]]`).test(l));
}

/** Whether the step whose progress line matches `re` was taken from the cache. */
function wasCached(stderr: string, re: RegExp): boolean {
  const line = stderr.split('\n').find((l) => re.test(l));
  if (!line) throw new Error(`no step matches ${re}:\n${stderr}`);
  const id = /^#(\d+) /.exec(line)![1];
  return stderr.split('\n').includes(`#${id} CACHED`);
}

describe('ONBUILD from an image', () => {
  let built: RunResult;
  let rootfs: Map<string, TarEntry>;
  beforeAll(async () => {
    expectOk(await build(['-q', '-t', 'kiln-test/onbuild-base', '-f', join(onbuildCtx, 'base.Dockerfile'), onbuildCtx]), 'onbuild base');
    const tar = join(base.dir, 'onbuild.tar');
    built = expectOk(await build(['-t', 'onbuild-app', '--target', 'app', '--build-arg', 'FLAVOR=spicy', '-o', 'type=image', '-o', `type=tar,dest=${tar}`, onbuildCtx]), 'onbuild app');
    rootfs = await readTar(tar);
  }, 120_000);

  it('the image keeps its triggers without running them', async () => {
    const img = await inspect(base.root, 'kiln-test/onbuild-base');
    expect(img.Config.OnBuild).toEqual([
      'ARG FLAVOR=plain',
      'COPY app.txt /app/',
      'RUN echo "built with $FLAVOR" > /app/flavor.txt',
      'COPY --from=assets /assets/logo.txt /app/logo.txt',
    ]);
    expect(img.RootFS.Layers).toHaveLength(1);
  });

  it('a build FROM it runs them first, with its own context, build args and stages', async () => {
    expect(text(rootfs, 'app/app.txt')).toBe('app from the consumer context\n');
    expect(text(rootfs, 'app/flavor.txt')).toBe('built with spicy\n');
    expect(text(rootfs, 'app/logo.txt')).toBe('logo\n');
    expect(text(rootfs, 'app/all.txt')).toBe('app from the consumer context\nbuilt with spicy\nlogo\n');
    expect(built.stderr).toMatch(/\[app 2\/6\] ONBUILD COPY app.txt \/app\/\n/);
    const img = await inspect(base.root, 'onbuild-app');
    // Triggers run once: they are not passed on to the new image.
    expect(img.Config.OnBuild ?? null).toBeNull();
    expect(img.Config.Labels).toEqual({ role: 'onbuild-base' });
    const history = (await kilnRun(base.root, ['history', '--no-trunc', '--format', '{{.CreatedBy}}', 'onbuild-app'])).stdout.split('\n');
    expect(history).toContain('RUN |1 FLAVOR=spicy /bin/sh -c echo "built with $FLAVOR" > /app/flavor.txt # buildkit');
    expect(history).toContain('ARG FLAVOR=spicy');
  });

  it('a stage built on that stage does not run the triggers again', async () => {
    const r = expectOk(await build(['--target', 'child', '--build-arg', 'FLAVOR=spicy', '-o', `type=tar,dest=${join(base.dir, 'child.tar')}`, onbuildCtx]));
    expect(stepLines(r.stderr, 'child').filter((l) => l.includes('ONBUILD'))).toEqual([]);
    const rootfs = await readTar(join(base.dir, 'child.tar'));
    expect(text(rootfs, 'app/listing.txt')).toBe('all.txt\napp.txt\nflavor.txt\nlisting.txt\nlogo.txt\n');
  });
});

describe('the stage graph (fixtures/build/stages)', () => {
  const runId = randomBytes(4).toString('hex');
  let first: RunResult;
  let rootfs: Map<string, TarEntry>;
  beforeAll(async () => {
    const tar = join(base.dir, 'stages.tar');
    first = expectOk(await build(['--jobs', '4', '--build-arg', `RUN_ID=${runId}`, '-o', `type=tar,dest=${tar}`, stagesCtx]), 'stages');
    rootfs = await readTar(tar);
  }, 120_000);

  it('independent stages run at the same time', () => {
    expect(text(rootfs, 'left.txt')).toBe('together\n');
    expect(text(rootfs, 'right.txt')).toBe('together\n');
  });

  it('an identical step in two stages runs once; both stages get its result', () => {
    expect(text(rootfs, 'same-runs.txt')).toBe('1\n');
    expect(text(rootfs, 'same-a.txt')).toBe('same\n');
    expect(text(rootfs, 'same-b.txt')).toBe('same\n');
  });

  it('a stage nothing needs does not run; a FROM scratch result holds only what it copied', () => {
    expect(stepLines(first.stderr, 'broken')).toEqual([]);
    expect([...rootfs.keys()].sort()).toEqual(['left.txt', 'platforms.txt', 'right.txt', 'same-a.txt', 'same-b.txt', 'same-runs.txt']);
  });

  it('FROM --platform=$BUILDPLATFORM and the platform ARGs', () => {
    const p = `linux/${hostArch()}`;
    expect(text(rootfs, 'platforms.txt')).toBe(`${p} ${p} ${p}\n`);
  });

  it('--target builds only the stages the target needs', async () => {
    const r = expectOk(await build(['--target', 'tools', '--build-arg', `RUN_ID=${runId}`, stagesCtx]));
    for (const other of ['left', 'right', 'same-a', 'same-b', 'counter', 'broken', 'stage-7']) expect(stepLines(r.stderr, other)).toEqual([]);
    expect(r.stderr).toContain('1/1 steps cached');
  });

  it('the unused stage would fail if it were the target', async () => {
    const r = await build(['-q', '--target', 'broken', stagesCtx]);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/Dockerfile:14: process "\/bin\/sh -c echo \\"nothing needs this stage\\" && exit 1" did not complete successfully: exit code: 1\n$/);
  });

  it('--no-cache-filter rebuilds that stage only; --no-cache rebuilds everything', async () => {
    const args = ['--target', 'counter', '--build-arg', `RUN_ID=${runId}`, stagesCtx];
    const filtered = expectOk(await build(['--no-cache-filter', 'same-a', ...args]));
    expect(wasCached(filtered.stderr, /\[same-a 2\/2\] RUN/)).toBe(false);
    expect(wasCached(filtered.stderr, /\[same-b 2\/2\] RUN/)).toBe(true);
    // same-a's step gave the same key, so what is built on it still comes from the cache.
    expect(wasCached(filtered.stderr, /\[counter 4\/4\] RUN/)).toBe(true);
    const none = expectOk(await build(['--no-cache', ...args]));
    // Only the twin of the identical step shares the other's result; nothing comes from the cache.
    const cached = none.stderr
      .split('\n')
      .filter((l) => /^#\d+ CACHED$/.test(l))
      .map((l) => none.stderr.split('\n').find((s) => s.startsWith(`${l.split(' ')[0]} [`)));
    expect(cached.length).toBeLessThanOrEqual(1);
    for (const step of cached) expect(step).toMatch(/\[same-[ab] 2\/2\] RUN/);
  }, 60_000);
});

describe('COPY --from a rebuilt stage', () => {
  let ctx: string;
  beforeAll(async () => {
    ctx = await copyFixture('copy-from-content', join(base.dir, 'ctx-copy-from'));
  });
  const imageId = async (args: string[]) => {
    const r = expectOk(await build(['-t', 'copy-from', ...args, ctx]));
    return { r, id: (await inspect(base.root, 'copy-from')).Id };
  };

  it('that made the same files keeps the steps after the copy cached and the image the same', async () => {
    const first = await imageId(['--build-arg', 'NOTE=1']);
    const second = await imageId(['--build-arg', 'NOTE=2']);
    // The stage ran again (its file has a new time), the copy ran, and found it had copied the same.
    expect(wasCached(second.r.stderr, /\[build 2\/2\] RUN/)).toBe(false);
    expect(wasCached(second.r.stderr, /\[stage-1 2\/3\] COPY --from=build/)).toBe(false);
    expect(wasCached(second.r.stderr, /\[stage-1 3\/3\] RUN/)).toBe(true);
    expect(second.id).toBe(first.id);
    // A third build with the same stage is cached all the way through, the copy included.
    const third = await imageId(['--build-arg', 'NOTE=2']);
    expect(wasCached(third.r.stderr, /\[stage-1 2\/3\] COPY --from=build/)).toBe(true);
    expect(third.id).toBe(first.id);
  });

  it('that made different files runs the steps after the copy', async () => {
    const before = await imageId(['--build-arg', 'NOTE=3']);
    const changed = await imageId(['--build-arg', 'NOTE=3', '--build-arg', 'OUTPUT=different']);
    expect(wasCached(changed.r.stderr, /\[stage-1 3\/3\] RUN/)).toBe(false);
    expect(changed.id).not.toBe(before.id);
    const r = await kilnRun(base.root, ['run', '--rm', 'copy-from', 'cat', '/app/seen.txt']);
    expect(r.stdout).toBe('different\n');
  });
});
