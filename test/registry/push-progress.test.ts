/**
 * What a push says while it runs. Compressing a large stored layer is most of a first push, so every
 * layer is announced (`Preparing`) before any is compressed, and each layer keeps one ID — its
 * diffID, as docker shows it — from `Preparing` to `Pushed` although the blob that goes out is the
 * gzip one.
 */
import { promises as fsp } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pushImage, type PushEvent } from '../../src/registry/index.js';
import { startRegistry, type RegistryServer } from '../helpers/registry/index.js';
import { isolatedEnv, kilnAsync, storeWithImage, tempDir } from './util.js';

const short = (digest: string): string => digest.slice('sha256:'.length, 'sha256:'.length + 12);

describe('push progress', () => {
  let reg: RegistryServer;
  let work: string;

  beforeAll(async () => {
    reg = await startRegistry({ mode: 'none' });
    work = await tempDir();
  });
  afterAll(async () => {
    await reg?.stop();
    if (work) await fsp.rm(work, { recursive: true, force: true });
  });

  it('announces every layer before compressing any, and names each by its diffID throughout', async () => {
    const { store, root } = await storeWithImage('progress:1', { extraLayerBytes: 200_000 });
    try {
      const local = await store.resolve('progress:1');
      const diffIDs = (await local.configFile()).rootfs.diff_ids;
      const stored = (await local.manifest()).layers.map((l) => l.digest);
      const events: Extract<PushEvent, { type: 'blob' }>[] = [];
      const pushed = await pushImage(local, `${reg.host}/progress/lib:1`, {
        store,
        env: { HOME: work, PATH: process.env.PATH },
        onEvent: (e) => {
          if (e.type === 'blob' && e.kind === 'layer') events.push(e);
        },
      });
      expect(pushed.blobs.pushed).toBe(3);

      // Both layers are announced first, as stored (uncompressed: their digests are their diffIDs).
      expect(events.slice(0, 2).map((e) => [e.status, e.digest, e.diffID])).toEqual([
        ['preparing', stored[0], diffIDs[0]],
        ['preparing', stored[1], diffIDs[1]],
      ]);
      // Then each goes out as its gzip blob, still carrying its diffID.
      const done = events.filter((e) => e.status === 'pushed');
      expect(done.map((e) => e.diffID).sort()).toEqual([...diffIDs].sort());
      for (const e of done) expect(stored).not.toContain(e.digest);
    } finally {
      await fsp.rm(root, { recursive: true, force: true });
    }
  });

  it('prints Preparing, Pushed and Layer already exists under the same docker-style layer ID', async () => {
    const { store, root } = await storeWithImage('progress:1', { extraLayerBytes: 200_000 });
    try {
      const diffIDs = (await (await store.resolve('progress:1')).configFile()).rootfs.diff_ids;
      const ids = diffIDs.map(short);
      const env = isolatedEnv(work);
      const ref = `${reg.host}/progress/cli:1`;
      expect((await kilnAsync(['--root', root, 'tag', 'progress:1', ref], { env })).code).toBe(0);

      const first = await kilnAsync(['--root', root, 'push', ref], { env });
      expect(first.code, first.stderr).toBe(0);
      const lines = first.stdout.trim().split('\n');
      expect(lines[0]).toBe(`The push refers to repository [${reg.host}/progress/cli]`);
      expect(lines.slice(1, 3)).toEqual(ids.map((id) => `${id}: Preparing`));
      expect(lines.slice(3, 5).sort()).toEqual(ids.map((id) => `${id}: Pushed`).sort());
      expect(lines[5]).toMatch(/^1: digest: sha256:[a-f0-9]{64} size: \d+$/);
      expect(lines).toHaveLength(6);

      const again = await kilnAsync(['--root', root, 'push', ref], { env });
      expect(again.code, again.stderr).toBe(0);
      expect(again.stdout).toContain(ids.map((id) => `${id}: Preparing`).join('\n'));
      for (const id of ids) expect(again.stdout).toContain(`${id}: Layer already exists\n`);
    } finally {
      await fsp.rm(root, { recursive: true, force: true });
    }
  });
});
