import { promises as fsp } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { memoryImage } from '../oci/layout/memory.js';
import { openStore } from './index.js';

let root: string;

beforeEach(async () => {
  root = join(await fsp.mkdtemp(join(tmpdir(), 'kiln-open-')), 'store');
});
afterEach(async () => {
  await fsp.rm(join(root, '..'), { recursive: true, force: true });
});

describe('openStore', () => {
  it('creates a store, and completes one that lost some of its directories', async () => {
    const store = await openStore({ root });
    await store.putImage(memoryImage({ layers: [{ blob: Buffer.from('layer') }] }), { names: ['kept'] });
    expect((await fsp.readdir(root)).sort()).toEqual(['blobs', 'cache', 'compressed', 'index.json', 'l', 'leases', 'oci-layout', 'snapshots', 'tmp']);
    await fsp.rm(join(root, 'leases'), { recursive: true });
    await fsp.rm(join(root, 'tmp'), { recursive: true });
    const again = await openStore({ root });
    expect(await fsp.readdir(root)).toContain('leases');
    expect(await fsp.readdir(root)).toContain('tmp');
    expect((await again.lookup('kept')).names).toEqual(['docker.io/library/kept:latest']);
    // Work that needs the restored directories goes through.
    await again.withLease((lease) => again.writeBlob(Buffer.from('more'), { lease }));
  });
});
