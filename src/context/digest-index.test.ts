import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmod, lstat, mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { DigestIndex, stampKey } from './digest-index.js';
import { openContext, type BuildContext, type OpenContextOptions } from './index.js';

const run = promisify(execFile);
const INDEX_MODULE = new URL('./index.ts', import.meta.url).pathname;
/** Children run from the repository, where `--import tsx` resolves. */
const REPO = new URL('../../', import.meta.url).pathname;

let root: string;
let ctxDir: string;
let cacheDir: string;
const opened: BuildContext[] = [];

beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), 'kiln-index-'));
  ctxDir = join(root, 'ctx');
  cacheDir = join(root, 'cache');
  await mkdir(ctxDir);
});
afterEach(async () => {
  await Promise.all(opened.splice(0).map((c) => c.close()));
  await rm(root, { recursive: true, force: true });
});

/** Files `f0..f{n-1}` spread over a few directories, each with distinct content. */
async function makeFiles(n: number, mode = 0o644): Promise<string[]> {
  const paths: string[] = [];
  for (let i = 0; i < n; i++) {
    const p = `d${i % 4}/f${i}`;
    await mkdir(join(ctxDir, `d${i % 4}`), { recursive: true });
    await writeFile(join(ctxDir, p), `content of file ${i} `.repeat(1 + (i % 7)), { mode });
    paths.push(p);
  }
  // Older than any racy window, so the first scan's entries are trusted by the next one.
  await sleep(60);
  return paths.sort();
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Opens the context, counting content reads. */
async function open(options: Partial<OpenContextOptions> = {}): Promise<{ c: BuildContext; reads: string[] }> {
  const reads: string[] = [];
  const c = await openContext(ctxDir, { cacheDir, ignoreFile: null, onContentRead: (p) => reads.push(p), ...options });
  opened.push(c);
  return { c, reads };
}

async function indexFile(): Promise<string> {
  const dir = join(cacheDir, 'context-index');
  const names = (await readdir(dir)).filter((n) => n.endsWith('.json'));
  expect(names).toHaveLength(1);
  return join(dir, names[0]!);
}

/** Entries in the index file, which must be intact (a damaged file reads as empty). */
async function validEntries(): Promise<number> {
  return (await DigestIndex.open(await indexFile(), ctxDir)).size;
}

/** A digest computed with no index at all. */
async function fresh(path = '.'): Promise<string> {
  const { c } = await open({ cacheDir: join(root, `nocache-${Math.random()}`) });
  const d = await c.checksum(path);
  await c.close();
  return d;
}

describe('persistent digest index', () => {
  it('a no-op rescan reads no file content and rewrites nothing', async () => {
    const files = await makeFiles(100); // enough to go through the worker pool
    const first = await open();
    const sum = await first.c.checksum('.');
    expect(first.reads.sort()).toEqual(files);
    await first.c.close();
    const file = await indexFile();
    const written = await stat(file, { bigint: true });

    const second = await open();
    expect(await second.c.checksum('.')).toBe(sum);
    expect(await second.c.manifest('.')).toEqual(await first.c.manifest('.'));
    expect(second.reads).toEqual([]);
    expect(second.c.stats).toEqual({ filesRead: 0, indexHits: 100 });
    await second.c.close();
    expect((await stat(file, { bigint: true })).mtimeNs).toBe(written.mtimeNs);
  });

  it.skipIf(process.getuid?.() !== 0)('a warm scan needs no read permission at all (run unprivileged)', async () => {
    await chmod(root, 0o755);
    await chmod(ctxDir, 0o755);
    await makeFiles(20, 0o600); // root-only files, unreadable for nobody from the start
    const first = await open();
    const sum = await first.c.checksum('.');
    await first.c.close();
    await chmod(cacheDir, 0o755);
    const script = [
      `import { openContext } from ${JSON.stringify(INDEX_MODULE)};`,
      `const c = await openContext(${JSON.stringify(ctxDir)}, { cacheDir: ${JSON.stringify(cacheDir)}, ignoreFile: null });`,
      `process.stdout.write(await c.checksum('.'));`,
      'await c.close();',
    ].join('\n');
    const { stdout } = await run('runuser', ['-u', 'nobody', '--', process.execPath, '--import', 'tsx', '--input-type=module', '-e', script], {
      cwd: REPO,
    });
    expect(stdout).toBe(sum);
  });

  it('re-reads exactly the file whose content changed, even with the same size and mtime', async () => {
    const files = await makeFiles(30);
    const first = await open();
    const before = await first.c.manifest('.');
    const sumBefore = await first.c.checksum('.');
    await first.c.close();

    const target = join(ctxDir, 'd1/f5');
    const old = await lstat(target, { bigint: true });
    const ref = join(root, 'timestamps');
    await writeFile(ref, '');
    await run('touch', ['-r', target, ref]);
    const content = await readFile(target, 'utf8');
    await writeFile(target, content.replace('content', 'CONTENT'));
    await run('touch', ['-r', ref, target]); // restores atime and mtime to the nanosecond
    const now = await lstat(target, { bigint: true });
    expect(now.size).toBe(old.size);
    expect(now.mtimeNs).toBe(old.mtimeNs);
    expect(now.ino).toBe(old.ino);
    expect(now.ctimeNs).not.toBe(old.ctimeNs);

    const second = await open();
    expect(await second.c.changedFiles(before, '.')).toEqual({ added: [], removed: [], changed: ['d1/f5'] });
    expect(second.reads).toEqual(['d1/f5']);
    const sumAfter = await second.c.checksum('.');
    expect(sumAfter).not.toBe(sumBefore);
    expect(sumAfter).toBe(await fresh());
    expect(files).toContain('d1/f5');
  });

  it('does not trust an entry hashed within the timestamp granularity of the file', async () => {
    const index = await DigestIndex.open(join(root, 'idx.json'), ctxDir);
    const at = 1_700_000_000_000;
    const stamp = (ms: number, ns = 123_456n) => ({
      dev: 1n, ino: 2n, mode: 0o100644n, size: 3n, mtimeNs: BigInt(ms) * 1_000_000n + ns, ctimeNs: BigInt(ms) * 1_000_000n + ns,
    });
    index.record(stamp(at - 5), 'sha256:' + 'a'.repeat(64) as `sha256:${string}`, at);
    expect(index.lookup(stamp(at - 5))).toBeUndefined(); // modified in the same tick as it was hashed
    index.record(stamp(at - 1000), 'sha256:' + 'b'.repeat(64) as `sha256:${string}`, at);
    expect(index.lookup(stamp(at - 1000))).toBe('sha256:' + 'b'.repeat(64));
    // Whole-second timestamps (coarse file systems) need a wider margin.
    index.record(stamp(at - 1000, 0n), 'sha256:' + 'c'.repeat(64) as `sha256:${string}`, at);
    expect(index.lookup(stamp(at - 1000, 0n))).toBeUndefined();
    // Any difference in the metadata is a miss.
    expect(index.lookup({ ...stamp(at - 1000), ctimeNs: stamp(at - 1000).ctimeNs + 1n })).toBeUndefined();
    expect(index.lookup({ ...stamp(at - 1000), mode: 0o100755n })).toBeUndefined();
  });

  it('re-hashes a file whose timestamps are not older than its hashing', async () => {
    await makeFiles(3);
    const future = new Date(Date.now() + 60_000);
    const { utimes } = await import('node:fs/promises');
    await utimes(join(ctxDir, 'd0/f0'), future, future);
    const first = await open();
    await first.c.checksum('.');
    await first.c.close();
    const second = await open();
    await second.c.checksum('.');
    expect(second.reads).toEqual(['d0/f0']);
  });

  it('tolerates a corrupt, torn or foreign index file and replaces it', async () => {
    await makeFiles(10);
    const expected = await fresh();
    const first = await open();
    await first.c.checksum('.');
    await first.c.close();
    const file = await indexFile();
    const good = await readFile(file);
    const flipped = Buffer.from(good);
    flipped[flipped.length >> 1] ^= 1;
    const junks = [good.subarray(0, good.length >> 1), flipped, Buffer.alloc(0), Buffer.from('{"format":"json"}'), randomBytes(good.length)];
    for (const junk of junks) {
      await writeFile(file, junk);
      const { c, reads } = await open();
      expect(await c.checksum('.')).toBe(expected);
      expect(reads).toHaveLength(10);
      await c.close();
      expect((await readFile(file)).subarray(0, 8).toString()).toBe('KILNCIX1');
    }
    const { c, reads } = await open();
    await c.checksum('.');
    expect(reads).toEqual([]);
  });

  it('round-trips entries and trusts none whose metadata differs', async () => {
    const path = join(root, 'idx.bin');
    const index = await DigestIndex.open(path, ctxDir);
    const at = Date.now();
    const s = { dev: 2049n, ino: 2n ** 60n + 5n, mode: 0o100644n, size: 2n ** 40n, mtimeNs: BigInt(at - 5000) * 1_000_000n + 7n, ctimeNs: BigInt(at - 4000) * 1_000_000n + 9n };
    const digest = `sha256:${'ab'.repeat(32)}` as const;
    index.record(s, digest, at);
    await index.save(new Set([stampKey(s)]));
    const again = await DigestIndex.open(path, ctxDir);
    expect(again.lookup(s)).toBe(digest);
    for (const field of ['dev', 'ino', 'mode', 'size', 'mtimeNs', 'ctimeNs'] as const) {
      expect(again.lookup({ ...s, [field]: s[field] + 1n })).toBeUndefined();
    }
    // Entries of files that left the context are dropped on the next save.
    again.record({ ...s, ino: 3n }, digest, at);
    await again.save(new Set([stampKey({ ...s, ino: 3n })]));
    expect((await DigestIndex.open(path, ctxDir)).size).toBe(1);
  });

  it('concurrent scanners in one process do not corrupt the index', async () => {
    const files = await makeFiles(80);
    for (let round = 0; round < 4; round++) {
      await writeFile(join(ctxDir, files[round * 7]!), `round ${round}`);
      const expected = await fresh();
      const sums = await Promise.all(
        Array.from({ length: 4 }, async (_, i) => {
          const { c } = await open({ workers: i % 2 === 0 ? 0 : 2 });
          const d = await c.checksum('.');
          await c.close();
          return d;
        }),
      );
      expect(new Set(sums)).toEqual(new Set([expected]));
      expect(await validEntries()).toBeGreaterThan(0);
    }
    await sleep(60);
    const { c } = await open();
    expect(await c.checksum('.')).toBe(await fresh());
    expect(c.stats.filesRead).toBeLessThanOrEqual(4); // at most the files written in the last rounds
  });

  it('concurrent scanner processes do not corrupt the index', async () => {
    await makeFiles(60);
    const script = (i: number) =>
      [
        `import { writeFileSync } from 'node:fs';`,
        `import { openContext } from ${JSON.stringify(INDEX_MODULE)};`,
        `for (let round = 0; round < 5; round++) {`,
        `  writeFileSync(${JSON.stringify(join(ctxDir, `own${i}`))}, 'round ' + round);`,
        `  const c = await openContext(${JSON.stringify(ctxDir)}, { cacheDir: ${JSON.stringify(cacheDir)}, ignoreFile: null });`,
        `  await c.checksum('d${i % 4}');`,
        `  await c.checksum('own${i}');`,
        `  await c.close();`,
        `}`,
      ].join('\n');
    await Promise.all(
      [0, 1, 2].map((i) => run(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script(i)], { cwd: REPO })),
    );
    expect(await validEntries()).toBeGreaterThan(0);
    const { c } = await open();
    expect(await c.checksum('.')).toBe(await fresh());
  });
});
