import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Mount } from '../dockerfile/instructions/mounts.js';
import { acquireCache, cacheDirName } from './cache.js';

let root: string;
beforeEach(() => {
  root = mkdtempSync(join(tmpdir(), 'kiln-cache-'));
});
afterEach(() => rmSync(root, { recursive: true, force: true }));

const mount = (over: Partial<Mount>): Mount => ({
  type: 'cache',
  from: '',
  source: '',
  target: '/root/.cache',
  readOnly: false,
  sizeLimit: 0,
  cacheId: '',
  cacheSharing: '',
  required: false,
  ...over,
});

describe('cache mounts', () => {
  it('names directories after the id, safely', () => {
    expect(cacheDirName('/root/.cache/go-build')).toBe('%2Froot%2F.cache%2Fgo-build');
    expect(cacheDirName('..')).toBe('%2E%2E');
    expect(cacheDirName('x'.repeat(500)).length).toBeLessThan(200);
  });

  it('shared: one directory, created with mode, seeded once, kept across uses', async () => {
    const seed = join(root, 'seed');
    mkdirSync(seed);
    writeFileSync(join(seed, 'f'), 'seeded');
    const m = mount({ cacheId: 'c1', mode: 0o700 });
    const a = await acquireCache(m, { cacheRoot: root, canChown: true, seed });
    const b = await acquireCache(m, { cacheRoot: root, canChown: true });
    expect(a.dir).toBe(b.dir);
    expect(statSync(a.dir).mode & 0o777).toBe(0o700);
    expect(readFileSync(join(a.dir, 'f'), 'utf8')).toBe('seeded');
    writeFileSync(join(a.dir, 'f'), 'changed');
    await a.release();
    const c = await acquireCache(m, { cacheRoot: root, canChown: true, seed });
    expect(readFileSync(join(c.dir, 'f'), 'utf8')).toBe('changed');
  });

  it('private: a second user while the first holds it gets its own instance', async () => {
    const m = mount({ cacheId: 'p', cacheSharing: 'private' });
    const a = await acquireCache(m, { cacheRoot: root, canChown: true });
    const b = await acquireCache(m, { cacheRoot: root, canChown: true });
    expect(a.dir).not.toBe(b.dir);
    await a.release();
    const c = await acquireCache(m, { cacheRoot: root, canChown: true });
    expect(c.dir).toBe(a.dir);
  });

  it('locked: waits until the holder releases', async () => {
    const m = mount({ cacheId: 'l', cacheSharing: 'locked' });
    const a = await acquireCache(m, { cacheRoot: root, canChown: true });
    const waits: string[] = [];
    let got = false;
    const pending = acquireCache(m, { cacheRoot: root, canChown: true, onWait: (w) => waits.push(w) }).then((l) => {
      got = true;
      return l;
    });
    await new Promise((r) => setTimeout(r, 150));
    expect(got).toBe(false);
    expect(waits[0]).toMatch(/waiting for the cache mount "l"/);
    await a.release();
    const b = await pending;
    expect(b.dir).toBe(a.dir);
    await b.release();
  });

  it('locked: takes over the lock of a dead holder', async () => {
    const m = mount({ cacheId: 'dead', cacheSharing: 'locked' });
    const lock = join(root, 'mounts', 'dead', 'data.lock');
    mkdirSync(lock, { recursive: true });
    writeFileSync(join(lock, 'owner'), '999999999.1');
    const l = await acquireCache(m, { cacheRoot: root, canChown: true });
    expect(existsSync(lock)).toBe(true);
    await l.release();
    expect(existsSync(lock)).toBe(false);
  });
});
