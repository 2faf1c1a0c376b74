import { promises as fsp } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { sha256, type Digest } from '../oci/digest.js';
import { memoryImage } from '../oci/layout/memory.js';
import { openStore } from './index.js';
import { createLease, readLeases } from './leases.js';
import { StoreLock } from './lock.js';

let root: string;

beforeEach(async () => {
  root = await fsp.mkdtemp(join(tmpdir(), 'kiln-leases-'));
});
afterEach(async () => {
  await fsp.rm(root, { recursive: true, force: true });
});

/** A store lock that counts how often it is taken: each take is one rewrite of a lease file. */
class CountingLock extends StoreLock {
  takes = 0;
  override run<T>(fn: () => Promise<T>): Promise<T> {
    this.takes++;
    return super.run(fn);
  }
}

const digest = (s: string): Digest => sha256(Buffer.from(s));

describe('leases', () => {
  it('have no file until they pin something, and lose it on release', async () => {
    const dir = join(root, 'leases');
    await fsp.mkdir(dir);
    const lease = await createLease(dir, join(root, 'tmp'), new StoreLock(root), { label: 'build' });
    expect(await fsp.readdir(dir)).toEqual([]);
    await lease.add(digest('a'));
    const [rec] = await readLeases(dir);
    expect(rec).toMatchObject({ id: lease.id, label: 'build', pid: process.pid, digests: [digest('a')] });
    await lease.release();
    expect(await fsp.readdir(dir)).toEqual([]);
  });

  it('write additions made while a write waits for the lock together, and list every digest', async () => {
    const dir = join(root, 'leases');
    await fsp.mkdir(dir);
    const lock = new CountingLock(root);
    const lease = await createLease(dir, join(root, 'tmp'), lock);
    const names = Array.from({ length: 20 }, (_, i) => digest(`d${i}`));
    await Promise.all(names.map((d) => lease.add(d)));
    expect(lock.takes).toBe(1);
    expect((await readLeases(dir))[0]!.digests.sort()).toEqual([...names].sort());
    // Pinning what is pinned already writes nothing.
    await lease.add(names[3]!, names[7]!);
    expect(lock.takes).toBe(1);
    await lease.add(digest('late'));
    expect(lock.takes).toBe(2);
    expect((await readLeases(dir))[0]!.digests).toHaveLength(21);
    await lease.release();
  });

  it('protect their content from a prune that runs while they are held', async () => {
    const store = await openStore({ root });
    const lease = await store.createLease({ label: 'build' });
    const blob = await store.writeBlob(Buffer.from('work in progress'), { lease });
    const pruned = await store.prune({});
    expect(pruned.blobsRemoved).toBe(0);
    expect(await store.hasBlob(blob.digest)).toBe(true);
    await lease.release();
    expect((await store.prune({})).blobsRemoved).toBe(1);
    expect(await store.hasBlob(blob.digest)).toBe(false);
  });
});

describe('index.json', () => {
  it('is not rewritten when an image gets the names it already has', async () => {
    const store = await openStore({ root });
    const image = memoryImage({ layers: [{ blob: Buffer.from('layer') }] });
    await store.putImage(image, { names: ['app:1'] });
    const before = await fsp.stat(join(root, 'index.json'));
    await store.putImage(image, { names: ['app:1'] });
    await store.tag('app:1', 'app:1');
    const after = await fsp.stat(join(root, 'index.json'));
    // index.json is replaced by rename: the same inode means it was left alone.
    expect(after.ino).toBe(before.ino);
    await store.tag('app:1', 'app:2');
    expect((await fsp.stat(join(root, 'index.json'))).ino).not.toBe(before.ino);
    expect((await store.lookup('app:2')).names).toEqual(['docker.io/library/app:1', 'docker.io/library/app:2']);
  });
});
