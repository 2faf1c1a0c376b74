/**
 * A cached RUN with a bind mount does not make the mount's source: with a .dockerignore, mounting
 * the context means copying what it keeps, which only a step that runs needs. Seen here through a
 * FIFO added to the context, which such a copy cannot take but which the step's key does not cover.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { busyboxStore, type BusyboxStore } from '../helpers/busybox.js';
import { expectOk, kilnRun } from '../helpers/build.js';

let base: BusyboxStore;
let ctx: string;

beforeAll(async () => {
  base = await busyboxStore();
  ctx = join(base.dir, 'ctx');
  mkdirSync(join(ctx, 'data'), { recursive: true });
  writeFileSync(join(ctx, 'data', 'input.txt'), 'bound\n');
  writeFileSync(join(ctx, '.dockerignore'), 'ignored-*\n');
  writeFileSync(join(ctx, 'Dockerfile'), `FROM ${'kiln-test/busybox:latest'}\nRUN --mount=type=bind,source=data,target=/mnt/data cat /mnt/data/input.txt > /bound.txt\n`);
});
afterAll(async () => {
  await base?.cleanup();
});

describe('RUN --mount=type=bind on a cached rebuild', () => {
  it('is cached without copying the context it would mount', async () => {
    expectOk(await kilnRun(base.root, ['build', '--progress', 'plain', '-t', 'bound', ctx]));
    execFileSync('mkfifo', [join(ctx, 'pipe')]);
    const again = expectOk(await kilnRun(base.root, ['build', '--progress', 'plain', '-t', 'bound', ctx]));
    expect(again.stderr).toMatch(/^#\d+ CACHED$/m);
    const run = await kilnRun(base.root, ['run', '--rm', 'bound', 'cat', '/bound.txt']);
    expect(run.stdout).toBe('bound\n');
    // Run again, the step mounts what the context keeps, the FIFO left out.
    const uncached = expectOk(await kilnRun(base.root, ['build', '--progress', 'plain', '--no-cache', '-t', 'bound', ctx]));
    expect(uncached.stderr).not.toMatch(/^#\d+ CACHED$/m);
  });
});
