/**
 * bin/kiln.js runs the CLI bundle with a V8 code cache per command: made after the command
 * succeeds, used as it is while V8 accepts it, made again when V8 rejects it, never made by `--help`.
 * Run on a copy of the launcher and the bundle, so the checkout's own caches are not touched.
 */
import { spawnSync } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { REPO_ROOT } from '../conformance/harness.js';

describe('the launcher', () => {
  let dir: string;
  let bundle: string;
  /** The code caches of `command` (named after it and the bundle's time). */
  const caches = (command: string) => readdirSync(bundle).filter((f) => f.startsWith(`kiln.cjs.${command}-`) && f.endsWith('.cache'));
  const kiln = (...args: string[]) => spawnSync(process.execPath, [join(dir, 'bin/kiln.js'), '--root', join(dir, 'store'), ...args], { encoding: 'utf8' });

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'kiln-launcher-'));
    mkdirSync(join(dir, 'bin'));
    cpSync(join(REPO_ROOT, 'bin/kiln.js'), join(dir, 'bin/kiln.js'));
    bundle = join(dir, 'dist/bundle');
    mkdirSync(bundle, { recursive: true });
    for (const f of ['kiln.cjs', 'tty.mjs']) cpSync(join(REPO_ROOT, 'dist/bundle', f), join(bundle, f));
    symlinkSync(join(REPO_ROOT, 'node_modules'), join(dir, 'node_modules'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('makes a code cache after a command succeeds, keeps it while V8 takes it, remakes a rejected one', () => {
    expect(kiln('images', '--help').status).toBe(0);
    expect(caches('images')).toEqual([]);
    expect(kiln('-v').stdout).toMatch(/^\d+\.\d+\.\d+\n$/);
    expect(readdirSync(bundle).filter((f) => f.endsWith('.cache'))).toEqual([]);

    const first = kiln('images');
    expect(first.status, first.stderr).toBe(0);
    expect(first.stdout).toMatch(/^REPOSITORY +TAG +IMAGE ID/);
    expect(caches('images')).toHaveLength(1);
    const cache = join(bundle, caches('images')[0]!);
    const made = statSync(cache);
    expect(made.size).toBeGreaterThan(10_000);

    // Accepted: the same output, and the cache is not written again.
    const second = kiln('images');
    expect(second.stdout).toBe(first.stdout);
    expect(statSync(cache).mtimeMs).toBe(made.mtimeMs);

    // Rejected (here: not a cache at all): the command still works, and a good cache replaces it.
    writeFileSync(cache, 'not a code cache');
    const third = kiln('images');
    expect(third.status, third.stderr).toBe(0);
    expect(third.stdout).toBe(first.stdout);
    expect(readFileSync(cache).length).toBeGreaterThan(10_000);
  });

  it('makes no cache for a command that failed', () => {
    const r = kiln('inspect', 'no-such-image');
    expect(r.status).not.toBe(0);
    expect(caches('inspect')).toEqual([]);
  });

  it('does not use the cache of an earlier bundle', () => {
    expect(kiln('images').status).toBe(0);
    const before = caches('images');
    // A rebuilt bundle (same length here, which is all V8 itself would check): a new cache.
    const later = new Date(Date.now() + 5000);
    const text = readFileSync(join(bundle, 'kiln.cjs'));
    writeFileSync(join(bundle, 'kiln.cjs'), text);
    utimesSync(join(bundle, 'kiln.cjs'), later, later);
    expect(kiln('images').status).toBe(0);
    expect(caches('images').filter((f) => !before.includes(f))).toHaveLength(1);
  });
});
