/**
 * Full logs on disk: a step printing 5 MiB keeps every byte in its log (and `kiln logs --build`
 * prints it back); a failing RUN prints its last 20 lines and the path of the whole log; old build
 * records are pruned.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { pruneBuilds } from '../../src/build/history/record.js';
import { type BusyboxStore } from '../helpers/busybox.js';
import { kilnRun } from '../helpers/build.js';
import { useFixtureStore } from '../helpers/fixture-store.js';
import { KILN_BIN } from '../helpers/kiln.js';
import { kilnAt, tempDir } from '../helpers/store.js';

let base: BusyboxStore;
let ctx: string;
useFixtureStore('progress', (s) => ({ base, ctx } = s));

const LINE = '0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklm\n';
const FIVE_MIB = 5 * 1024 * 1024;

function buildIdOf(stderr: string): string {
  return /kiln logs --build (\d{8}-\d{6}-[0-9a-f]{6})/.exec(stderr)![1]!;
}

describe('build logs', () => {
  it('a step printing 5 MiB keeps all of it in its log file, and kiln logs --build prints it whole', async () => {
    const r = await kilnRun(base.root, ['build', '--progress', 'plain', '-f', join(ctx, 'Dockerfile.big'), ctx]);
    expect(r.status, r.stderr.slice(-2000)).toBe(0);
    const id = buildIdOf(r.stderr);
    const logs = join(base.root, 'builds', id, 'logs');
    const expected = LINE.repeat(Math.ceil(FIVE_MIB / LINE.length)).slice(0, FIVE_MIB);
    const log = readFileSync(join(logs, '2.log'), 'latin1');
    expect(log.length).toBe(FIVE_MIB);
    expect(log === expected).toBe(true);

    // The list of steps with their log sizes, then one step by number and by part of its name.
    const list = kilnAt(base.root, ['logs', '--build']);
    expect(list.status, list.stderr).toBe(0);
    expect(list.stdout).toMatch(/^#2 +DONE +5\.24MB +\[2\/2\] RUN yes/m);
    const byNumber = spawnSync(process.execPath, [KILN_BIN, '--root', base.root, 'logs', '--build', id, '2'], { maxBuffer: 64 * 1024 * 1024 });
    expect(byNumber.status).toBe(0);
    expect(byNumber.stdout.length).toBe(FIVE_MIB);
    const byName = spawnSync(process.execPath, [KILN_BIN, '--root', base.root, 'logs', '--build', id.slice(-6), 'RUN yes'], { maxBuffer: 64 * 1024 * 1024 });
    expect(byName.stdout.equals(byNumber.stdout)).toBe(true);
    // A step alone means that step of the latest build.
    const latest = spawnSync(process.execPath, [KILN_BIN, '--root', base.root, 'logs', '--build', '#2'], { maxBuffer: 64 * 1024 * 1024 });
    expect(latest.stdout.equals(byNumber.stdout)).toBe(true);
  });

  it('a failing RUN prints its last 20 lines and the path of its whole log', async () => {
    const r = await kilnRun(base.root, ['build', '--progress', 'quiet', '-f', join(ctx, 'Dockerfile.fail'), ctx]);
    expect(r.status).toBe(1);
    expect(r.stderr).toContain('   output line 11\n');
    expect(r.stderr).toContain('   output line 30\n');
    expect(r.stderr).not.toContain('output line 10\n');
    const path = /^full log: (\S+) \(\d+ bytes; kiln logs --build \S+ \d+\)$/m.exec(r.stderr)?.[1];
    expect(path, r.stderr).toBeDefined();
    const whole = readFileSync(path!, 'utf8');
    expect(whole.split('\n').filter(Boolean)).toEqual(Array.from({ length: 30 }, (_, i) => `output line ${i + 1}`));
    expect(r.stderr).toMatch(/Dockerfile\.fail:4: process .* did not complete successfully: exit code: 7\n$/);
    // -q keeps the error block exactly as before: no log path.
    const quiet = await kilnRun(base.root, ['build', '-q', '-f', join(ctx, 'Dockerfile.fail'), ctx]);
    expect(quiet.stderr).not.toContain('full log');
  });

  it('keeps only the newest build records', async () => {
    const store = await tempDir();
    try {
      for (let i = 0; i < 55; i++) {
        const id = `20260101-0000${String(i).padStart(2, '0')}-000abc`;
        mkdirSync(join(store.dir, 'builds', id, 'logs'), { recursive: true });
        writeFileSync(join(store.dir, 'builds', id, 'build.json'), JSON.stringify({ version: 1, id, steps: [] }));
      }
      expect(await pruneBuilds(store.dir, 50)).toBe(5);
      const left = readdirSync(join(store.dir, 'builds')).sort();
      expect(left).toHaveLength(50);
      expect(left[0]).toBe('20260101-000005-000abc');
    } finally {
      await store.cleanup();
    }
  });
});
