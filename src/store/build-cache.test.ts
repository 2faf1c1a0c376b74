import { mkdtempSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { openStore } from './index.js';

const roots: string[] = [];
afterEach(async () => {
  for (const r of roots.splice(0)) await rm(r, { recursive: true, force: true });
});

async function freshStore() {
  const root = mkdtempSync(join(tmpdir(), 'kiln-cache-'));
  roots.push(root);
  return openStore({ root });
}

describe('build-cache records', () => {
  it('keep the content they pin through garbage collection, until the cache is pruned', async () => {
    const store = await freshStore();
    const pinned = await store.writeBlob(Buffer.from('a cached layer'));
    const loose = await store.writeBlob(Buffer.from('nobody wants me'));
    const key = pinned.digest; // any digest names a record
    await store.buildCache.put(key, { pins: [pinned.digest], lastUsed: new Date().toISOString(), step: 'RUN true' });

    await store.gc();
    expect(await store.hasBlob(pinned.digest)).toBe(true);
    expect(await store.hasBlob(loose.digest)).toBe(false);
    expect((await store.buildCache.get(key))?.step).toBe('RUN true');

    const pruned = await store.prune({ all: true });
    expect(pruned.cacheRecordsRemoved).toBe(1);
    expect(await store.hasBlob(pinned.digest)).toBe(false);
    expect(await store.buildCache.get(key)).toBeUndefined();
  });

  it('plain prune leaves the build cache', async () => {
    const store = await freshStore();
    const pinned = await store.writeBlob(Buffer.from('layer'));
    await store.buildCache.put(pinned.digest, { pins: [pinned.digest], lastUsed: new Date().toISOString() });
    const pruned = await store.prune();
    expect(pruned.cacheRecordsRemoved).toBe(0);
    expect(await store.hasBlob(pinned.digest)).toBe(true);
  });
});
