import { promises as fsp } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { IS_ROOT, T0, busyboxLayers, dir, file, opaque, symlink, tempDir, whiteout } from '../../../test/helpers/copy-fixtures.js';
import { Readable } from 'node:stream';
import { extractLayer, writeTarEntries } from '../../oci/layer/index.js';
import { DirFS, FSViewError, LayeredFS, OutsideRootError, cleanAbs } from './index.js';

let base: string;
let view: LayeredFS;

beforeAll(async () => {
  base = await tempDir();
  view = new LayeredFS(await busyboxLayers(base), { label: 'stage base' });
});

afterAll(async () => {
  await fsp.rm(base, { recursive: true, force: true });
});

describe('LayeredFS', () => {
  it('merges directories, upper entries first, sorted by bytes', async () => {
    expect(await view.readdir('/')).toEqual(['bin', 'etc', 'home', 'opt', 'run', 'srv', 'tmp', 'usr', 'var']);
    expect(await view.readdir('/etc')).toEqual(['group', 'motd', 'passwd']);
  });

  it('hides whited-out names', async () => {
    expect(await view.readdir('/bin')).toEqual(['busybox', 'sh']);
    expect(await view.lstat('/bin/ls')).toBeUndefined();
  });

  it('shows nothing below an opaque directory', async () => {
    expect(await view.readdir('/srv/data')).toEqual(['c']);
    expect(await view.lstat('/srv/data/a')).toBeUndefined();
  });

  it('gives a merged directory the metadata of its topmost copy', async () => {
    const etc = await view.lstat('/etc');
    expect(etc?.type).toBe('directory');
    expect(Math.floor(etc!.mtimeMs / 1000)).toBe(T0 + 11);
    expect(etc!.hostPath).toBe(join(base, 'upper', 'etc'));
  });

  it('reports owners and modes of the lower layers', async () => {
    const app = await view.lstat('/home/app');
    expect(app?.mode).toBe(0o750);
    if (IS_ROOT) expect([app?.uid, app?.gid]).toEqual([1000, 1000]);
    expect((await view.lstat('/tmp'))?.mode).toBe(0o1777);
  });

  it('resolves absolute symlinks against the view root, never the host', async () => {
    expect(await view.resolve('/var/run', { followFinal: true })).toBe('/run');
    expect(await view.resolve('/var/run/x/y')).toBe('/run/x/y');
    expect(await view.resolve('/var/run')).toBe('/var/run');
    const run = await view.lstat('/var/run/');
    expect(run?.type).toBe('symlink');
    expect(await view.readlink('/var/run')).toBe('/run');
  });

  it('follows relative links and lstat does not follow the last component', async () => {
    expect((await view.lstat('/bin/sh'))?.type).toBe('symlink');
    expect(await view.resolve('/bin/sh', { followFinal: true })).toBe('/bin/busybox');
    expect((await view.readFile('/bin/sh')).toString()).toBe('#!busybox');
  });

  it('reads files through the merge', async () => {
    expect((await view.readFile('/etc/motd')).toString()).toBe('hello');
    expect((await view.readFile('/etc/passwd')).toString()).toContain('app:x:1000');
  });

  it('keeps `..` at the root and detects loops', async () => {
    const b = await tempDir();
    try {
      await dir(b, 'l/a/b');
      await symlink(b, 'l/a/b/up', '../../../../../../etc');
      await symlink(b, 'l/loop1', 'loop2');
      await symlink(b, 'l/loop2', 'loop1');
      const v = new LayeredFS([join(b, 'l')]);
      expect(await v.resolve('/a/b/up/passwd', { followFinal: true })).toBe('/etc/passwd');
      await expect(v.resolve('/loop1', { followFinal: true })).rejects.toMatchObject({ errno: 'ELOOP' });
      await expect(v.readdir('/nope')).rejects.toBeInstanceOf(FSViewError);
    } finally {
      await fsp.rm(b, { recursive: true, force: true });
    }
  });

  it('lets an upper file hide a lower directory and a whiteout hide an upper-less directory', async () => {
    const b = await tempDir();
    try {
      await file(b, 'low/d/x', 'x');
      await file(b, 'low/e/y', 'y');
      await file(b, 'up/d', 'now a file');
      await whiteout(b, 'up/e');
      await opaque(b, 'up/f');
      await file(b, 'low/f/hidden', '');
      const v = new LayeredFS([join(b, 'up'), join(b, 'low')]);
      expect((await v.lstat('/d'))?.type).toBe('file');
      expect(await v.lstat('/d/x')).toBeUndefined();
      expect(await v.lstat('/e')).toBeUndefined();
      expect(await v.readdir('/f')).toEqual([]);
      expect(await v.readdir('/')).toEqual(['d', 'f']);
    } finally {
      await fsp.rm(b, { recursive: true, force: true });
    }
  });

  it('reads snapshots unpacked by the layer extractor in overlay form', async () => {
    const b = await tempDir();
    try {
      const low = join(b, 'low');
      const up = join(b, 'up');
      await fsp.mkdir(low);
      await fsp.mkdir(up);
      const tar = (entries: Parameters<typeof writeTarEntries>[0]) => writeTarEntries(entries) as Readable;
      await extractLayer(
        tar([
          { path: '/a', content: 'a' },
          { path: '/d', type: 'directory' },
          { path: '/d/old', content: 'old' },
        ]),
        low,
        { whiteouts: 'overlay', ownership: 'ignore' },
      );
      await extractLayer(
        tar([
          { path: '/a', type: 'whiteout' },
          { path: '/d', type: 'directory' },
          { path: '/d', type: 'opaque' },
          { path: '/d/new', content: 'new' },
        ]),
        up,
        { whiteouts: 'overlay', ownership: 'ignore' },
      );
      const v = new LayeredFS([up, low]);
      expect(await v.readdir('/')).toEqual(['d']);
      expect(await v.readdir('/d')).toEqual(['new']);
    } finally {
      await fsp.rm(b, { recursive: true, force: true });
    }
  });

  it('lists entries with their host paths', async () => {
    const entries = await view.entries('/srv/data');
    expect(entries.map((e) => [e.path, e.type, e.hostPath])).toEqual([['/srv/data/c', 'file', join(base, 'upper', 'srv/data/c')]]);
  });
});

describe('DirFS', () => {
  let ctx: string;
  beforeAll(async () => {
    ctx = await tempDir();
    await file(ctx, 'a.txt', 'a');
    await file(ctx, 'docs/readme.md', 'r');
    await file(ctx, 'docs/keep.md', 'k');
    await file(ctx, 'secret/key', 's');
    await symlink(ctx, 'passwd', '/etc/passwd');
    await symlink(ctx, 'rootlink', '/');
    await symlink(ctx, 'up', '../..');
    await symlink(ctx, 'docslink', 'docs');
  });
  afterAll(async () => {
    await fsp.rm(ctx, { recursive: true, force: true });
  });

  it('reports ownership as 0:0 like a context BuildKit received', async () => {
    const e = await new DirFS(ctx).lstat('/a.txt');
    expect([e?.uid, e?.gid]).toEqual([0, 0]);
    const kept = await new DirFS(ctx, { owner: 'keep' }).lstat('/a.txt');
    expect(kept?.uid).toBe(process.getuid?.());
  });

  it('hides ignored paths but keeps a directory an exception re-includes from', async () => {
    const fs = new DirFS(ctx, { ignore: { excludePatterns: ['docs', '!docs/keep.md', 'secret'] } });
    expect(await fs.readdir('/')).toEqual(['a.txt', 'docs', 'docslink', 'passwd', 'rootlink', 'up']);
    expect(await fs.readdir('/docs')).toEqual(['keep.md']);
    expect(await fs.lstat('/secret/key')).toBeUndefined();
    expect(await fs.lstat('/docs/readme.md')).toBeUndefined();
  });

  it('refuses to follow links that leave the directory, naming them', async () => {
    const fs = new DirFS(ctx);
    await expect(fs.resolve('/passwd', { followFinal: true })).rejects.toBeInstanceOf(OutsideRootError);
    await expect(fs.resolve('/rootlink/etc')).rejects.toThrow(/\/rootlink is a symlink to "\/", which is outside the build context/);
    await expect(fs.resolve('/up/x')).rejects.toBeInstanceOf(OutsideRootError);
    // Not following the last component is fine: the link itself is inside.
    expect(await fs.resolve('/passwd')).toBe('/passwd');
    expect(await fs.resolve('/docslink/keep.md', { followFinal: true })).toBe('/docs/keep.md');
  });

  it('cleans input paths lexically (`..` stops at the root)', () => {
    expect(cleanAbs('../../a/./b/../c')).toBe('/a/c');
  });
});
