/**
 * `kiln prune -a` drops the RUN --mount=type=cache directories (and what ADD knew of URLs) with the rest of the build cache,
 * as `docker builder prune -a` does, but not while another kiln process is building: a shared cache
 * mount has no lock that would say it is in use.
 */
import { existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { busyboxStore, loadBusybox, type BusyboxStore } from '../helpers/busybox.js';
import { kilnAt, spawnKiln } from '../helpers/store.js';

let base: BusyboxStore;
let ctx: string;
const mountsDir = () => join(base.root, 'cache', 'mounts');
const mounts = () => (existsSync(mountsDir()) ? readdirSync(mountsDir()) : []);

beforeAll(async () => {
  base = await busyboxStore();
  ctx = join(base.dir, 'ctx');
  mkdirSync(ctx);
  writeFileSync(
    join(ctx, 'Dockerfile'),
    [
      `FROM ${base.image}`,
      'ARG PAUSE=0',
      // What the cache held when the step ran is kept in the image.
      'RUN --mount=type=cache,id=downloads,target=/cache ls /cache > /seen; echo fetched > /cache/pkg; sleep $PAUSE',
      '',
    ].join('\n'),
  );
});
afterAll(async () => {
  await base?.cleanup();
});

const seen = async (tag: string): Promise<string> => {
  const r = kilnAt(base.root, ['run', '--rm', tag, 'cat', '/seen']);
  expect(r.status, r.stderr).toBe(0);
  return r.stdout;
};

describe('kiln prune -a and cache mounts', () => {
  it('removes cache mounts with the build cache, so the next build starts with an empty one', async () => {
    expect(kilnAt(base.root, ['build', '-q', '-t', 'first', ctx]).status).toBe(0);
    expect(kilnAt(base.root, ['build', '-q', '--no-cache', '-t', 'second', ctx]).status).toBe(0);
    // The second build found what the first left in the cache.
    expect(await seen('second')).toBe('pkg\n');
    expect(mounts()).toHaveLength(1);

    // A record of what ADD knew of a URL, as a build leaves it.
    mkdirSync(join(base.root, 'cache', 'http'), { recursive: true });
    writeFileSync(join(base.root, 'cache', 'http', 'url.json'), JSON.stringify({ url: 'http://127.0.0.1/x', digest: 'sha256:0', mtime: 0 }));
    const pruned = kilnAt(base.root, ['prune', '-a', '-f']);
    expect(pruned.status, pruned.stderr).toBe(0);
    expect(pruned.stdout).toContain('Deleted cache mounts: 1');
    expect(mounts()).toEqual([]);
    expect(existsSync(join(base.root, 'cache', 'http'))).toBe(false);

    // -a took the base image too.
    await loadBusybox(base.root);
    expect(kilnAt(base.root, ['build', '-q', '--no-cache', '-t', 'third', ctx]).status).toBe(0);
    expect(await seen('third')).toBe('');
  });

  it('keeps them while another kiln process is building', async () => {
    const building = spawnKiln(base.root, ['build', '--progress', 'plain', '--no-cache', '--build-arg', 'PAUSE=3', '-t', 'slow', ctx]);
    let log = '';
    building.stderr!.on('data', (d: Buffer) => (log += d.toString()));
    const done = new Promise<number | null>((resolve) => building.once('close', resolve));
    try {
      // Until the RUN step is running (its cache mount in use).
      for (let i = 0; i < 200 && !/RUN --mount/.test(log); i++) await new Promise((r) => setTimeout(r, 50));
      expect(log).toMatch(/RUN --mount/);
      const pruned = kilnAt(base.root, ['prune', '-a', '-f']);
      expect(pruned.status, pruned.stderr).toBe(0);
      expect(pruned.stdout).toContain('Cache mounts kept: another kiln process is building');
      expect(mounts()).toHaveLength(1);
    } finally {
      expect(await done).toBe(0);
    }
  });
});
