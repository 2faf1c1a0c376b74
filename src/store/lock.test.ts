import { spawn } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { StoreLockError } from './errors.js';
import { StoreLock } from './lock.js';

const here = import.meta.dirname;
let root: string;

beforeEach(async () => {
  root = await fsp.mkdtemp(join(tmpdir(), 'kiln-lock-'));
});
afterEach(async () => {
  await fsp.rm(root, { recursive: true, force: true });
});

/** Runs `script` in a node process of its own with `StoreLock` imported; resolves with its exit. */
function child(script: string, args: string[]): Promise<{ code: number | null; stderr: string }> {
  return (async () => {
    const file = join(root, `child-${Math.random().toString(36).slice(2)}.mts`);
    await fsp.writeFile(file, `import { StoreLock } from ${JSON.stringify(pathToFileURL(join(here, 'lock.ts')).href)};\n${script}\n`);
    return new Promise((done, reject) => {
      const proc = spawn(process.execPath, ['--import', 'tsx', file, ...args], { cwd: resolve(here, '../..'), stdio: ['ignore', 'ignore', 'pipe'] });
      let stderr = '';
      proc.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      proc.on('error', reject);
      proc.on('close', (code) => done({ code, stderr }));
    });
  })();
}

describe('store lock', () => {
  it('lets one process at a time change shared state', async () => {
    // Each process increments a counter file 25 times with a read, a pause and a write: any two
    // holders at once would lose increments.
    const counter = join(root, 'counter');
    await fsp.writeFile(counter, '0');
    const script = `
      const { readFile, writeFile } = await import('node:fs/promises');
      const { setTimeout: sleep } = await import('node:timers/promises');
      const [root, counter] = process.argv.slice(2);
      const lock = new StoreLock(root);
      for (let i = 0; i < 25; i++) {
        await lock.run(async () => {
          const n = Number(await readFile(counter, 'utf8'));
          await sleep(2);
          await writeFile(counter, String(n + 1));
        });
      }
    `;
    const runs = await Promise.all([child(script, [root, counter]), child(script, [root, counter]), child(script, [root, counter])]);
    for (const r of runs) expect(r.stderr).toBe('');
    expect(await fsp.readFile(counter, 'utf8')).toBe('75');
    expect(await fsp.readdir(root)).not.toContain('store.lock');
  }, 60_000);

  it('waits for a live holder and gives up with a clear error after its timeout', async () => {
    await fsp.mkdir(join(root, 'store.lock'));
    const lock = new StoreLock(root, { timeoutMs: 300 });
    let ran = false;
    const err = await lock
      .run(async () => {
        ran = true;
      })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StoreLockError);
    expect((err as StoreLockError).message).toMatch(/timed out after .* waiting for the store lock/);
    expect(ran).toBe(false);
  });

  it('takes over a lock whose holder stopped refreshing it (killed with SIGKILL)', async () => {
    const path = join(root, 'store.lock');
    await fsp.mkdir(path);
    const old = new Date(Date.now() - 60_000);
    await fsp.utimes(path, old, old);
    const lock = new StoreLock(root, { timeoutMs: 2000 });
    expect(await lock.run(async () => 'ran')).toBe('ran');
    expect(await fsp.readdir(root)).not.toContain('store.lock');
  });

  it('a holder busy for longer than the stale time keeps the lock', async () => {
    // Two lock objects on one root behave as two processes do (the in-process queue is per object).
    const holder = new StoreLock(root, { staleMs: 5000 });
    const contender = new StoreLock(root, { staleMs: 5000 });
    const events: string[] = [];
    const held = holder.run(async () => {
      events.push('holder in');
      await new Promise((r) => setTimeout(r, 6000));
      events.push('holder out');
    });
    await new Promise((r) => setTimeout(r, 50));
    await contender.run(async () => {
      events.push('contender in');
    });
    await held;
    expect(events).toEqual(['holder in', 'holder out', 'contender in']);
  }, 20_000);
});
