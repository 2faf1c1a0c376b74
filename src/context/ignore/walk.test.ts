import { chmod, mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { InputFileError } from '../../errors.js';
import { IgnorePatternError } from './errors.js';
import { SKIP_DIR, WalkFilter, visitWalk, walk, type FilterSpec } from './walk.js';

let root: string;

beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), 'kiln-walk-'));
});
afterEach(async () => {
  await chmod(root, 0o700).catch(() => undefined);
  await rm(root, { recursive: true, force: true });
});

/** Creates entries: a trailing `/` makes a directory, `name -> target` a symlink, else an empty file. */
async function tree(...entries: string[]): Promise<void> {
  for (const e of entries) {
    const [path, target] = e.split(' -> ') as [string, string | undefined];
    if (target !== undefined) await symlink(target, join(root, path));
    else if (path.endsWith('/')) await mkdir(join(root, path), { recursive: true });
    else await writeFile(join(root, path), '');
  }
}

async function list(filters?: FilterSpec | FilterSpec[]): Promise<string[]> {
  const out: string[] = [];
  for await (const e of walk(root, filters)) {
    out.push(`${e.stats.isSymbolicLink() ? 'link' : e.stats.isDirectory() ? 'dir' : 'file'} ${e.path}`);
  }
  return out;
}

describe('walk', () => {
  it('walks in pre-order, names in byte order', async () => {
    await tree('b/', 'b/z', 'b/a', 'B', '_', 'a', 'é', '😀', '\ue000', 'a0/', 'a0/x');
    expect(await list()).toEqual([
      'file B', 'file _', 'file a', 'dir a0', 'file a0/x', 'dir b', 'file b/a', 'file b/z', 'file é', 'file \ue000', 'file 😀',
    ]);
  });

  it('reports symlinks and never follows them', async () => {
    await tree('real/', 'real/f', 'link -> real', 'dangling -> nowhere', 'up -> ..');
    expect(await list()).toEqual(['link dangling', 'link link', 'dir real', 'file real/f', 'link up']);
  });

  it('resolves a symlinked root', async () => {
    await tree('ctx/', 'ctx/f');
    const link = `${root}-link`;
    await symlink(join(root, 'ctx'), link);
    try {
      const paths: string[] = [];
      for await (const e of walk(link)) paths.push(e.path);
      expect(paths).toEqual(['f']);
    } finally {
      await rm(link, { force: true });
    }
  });

  it('skips excluded directories unless an exception may re-include something below', async () => {
    await tree('node_modules/', 'node_modules/m/', 'node_modules/m/i.js', 'src/', 'src/a.ts', 'src/a.log', 'docs/', 'docs/x', 'docs/keep/', 'docs/keep/k');
    expect(await list({ excludePatterns: ['node_modules', '**/*.log', 'docs', '!docs/keep'] })).toEqual([
      'dir docs', 'dir docs/keep', 'file docs/keep/k', 'dir src', 'file src/a.ts',
    ]);
  });

  it('reports an excluded directory late, only when something inside is included', async () => {
    await tree('a/', 'a/b/', 'a/b/keep.txt', 'a/c/', 'a/c/drop', 'z');
    expect(await list({ excludePatterns: ['a', '!**/keep.txt'] })).toEqual(['dir a', 'dir a/b', 'file a/b/keep.txt', 'file z']);
    expect(await list({ excludePatterns: ['a', '!**/nothing'] })).toEqual(['file z']);
  });

  it('applies include patterns', async () => {
    await tree('a/', 'a/b/', 'a/b/x.txt', 'a/c', 'top.txt');
    expect(await list({ includePatterns: ['**/*.txt'] })).toEqual(['dir a', 'dir a/b', 'file a/b/x.txt', 'file top.txt']);
    expect(await list({ includePatterns: ['a/b'] })).toEqual(['dir a', 'dir a/b', 'file a/b/x.txt']);
  });

  it('stacks filters, innermost first', async () => {
    await tree('foo/', 'foo/bar');
    expect(await list([{ excludePatterns: ['foo'] }, { excludePatterns: ['!foo/bar'] }])).toEqual([]);
    expect(await list([new WalkFilter({ excludePatterns: ['foo', '!foo/bar'] })])).toEqual(['dir foo', 'file foo/bar']);
  });

  it('lets the consumer prune with SKIP_DIR, also for late-reported directories', async () => {
    await tree('foo/', 'foo/x/', 'foo/y/', 'foo/x/a.txt', 'foo/y/b.txt');
    const seen: string[] = [];
    await visitWalk(root, { includePatterns: ['**/*.txt'] }, (e) => {
      seen.push(e.path);
      return SKIP_DIR;
    });
    expect(seen).toEqual(['foo']);

    const it2 = walk(root);
    const first = await it2.next();
    expect(first.value?.path).toBe('foo');
    expect((await it2.next(SKIP_DIR)).done).toBe(true);
  });

  it('can be abandoned early', async () => {
    await tree('a', 'b', 'c');
    for await (const e of walk(root)) {
      expect(e.path).toBe('a');
      break;
    }
  });

  it('rejects invalid patterns before reading anything', async () => {
    await expect(list({ excludePatterns: ['!'] })).rejects.toBeInstanceOf(IgnorePatternError);
    expect(() => new WalkFilter({ includePatterns: ['a['] })).toThrow(IgnorePatternError);
  });

  it('fails with a typed error for a missing or non-directory root', async () => {
    await tree('file');
    await expect(list()).resolves.toEqual(['file file']);
    const walkOf = async (p: string) => {
      for await (const _ of walk(p)) void _;
    };
    await expect(walkOf(join(root, 'missing'))).rejects.toBeInstanceOf(InputFileError);
    await expect(walkOf(join(root, 'file'))).rejects.toBeInstanceOf(InputFileError);
  });

  it.skipIf(process.getuid?.() === 0)('fails on an unreadable directory only if it is part of the context', async () => {
    await tree('foo/', 'foo/bar/', 'other');
    await chmod(join(root, 'foo', 'bar'), 0);
    try {
      await expect(list()).rejects.toThrow(/permission denied/);
      expect(await list({ excludePatterns: ['**/bar'] })).toEqual(['dir foo', 'file other']);
      expect(await list({ excludePatterns: ['**/bar', '!foo/bar/baz'] })).toEqual(['dir foo', 'file other']);
      await expect(list({ excludePatterns: ['**/bar', '!foo/bar'] })).rejects.toBeInstanceOf(InputFileError);
    } finally {
      await chmod(join(root, 'foo', 'bar'), 0o700);
    }
  });

  it('answers whether a single path passes, like opening it through the filter', () => {
    const f = new WalkFilter({ excludePatterns: ['foo', '!foo/bar', 'foo/bar/baz', '!foo/bar/baz/x'] });
    expect(f.allows('foo/bar/baz/x')).toBe(true);
    expect(f.allows('foo/bar/baz/y')).toBe(false);
    expect(new WalkFilter({ includePatterns: ['bar*'] }).allows('bar/foo')).toBe(true);
    expect(new WalkFilter({ includePatterns: ['bar*'] }).allows('baz')).toBe(false);
  });
});
