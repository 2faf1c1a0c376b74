import { promises as fsp } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  IS_ROOT,
  T0,
  busyboxLayers,
  byName,
  dir,
  file,
  hardlink,
  readTar,
  settleTimes,
  symlink,
  tempDir,
  type TarRecord,
} from '../../../test/helpers/copy-fixtures.js';
import { DirFS, LayeredFS, OutsideRootError, UserLookupError } from '../fsview/index.js';
import { CopyError, SourceNotFoundError, copyLayer, normalizeDest, planCopy, type CopyRequest } from './index.js';

let base: string;
let ctxDir: string;
let ctx: DirFS;
let view: LayeredFS;

beforeAll(async () => {
  base = await tempDir();
  view = new LayeredFS(await busyboxLayers(join(base, 'rootfs')), { label: 'stage base' });
  ctxDir = join(base, 'ctx');
  await file(ctxDir, 'foo', 'foo-contents', { mode: 0o640, mtime: T0 + 100 });
  await file(ctxDir, 'bar.txt', 'bar', { mtime: T0 });
  await file(ctxDir, 'baz.txt', 'baz', { mtime: T0 });
  await dir(ctxDir, 'dir', { mode: 0o700, mtime: T0 + 200 });
  await file(ctxDir, 'dir/a', 'a', { mode: 0o600, mtime: T0 + 201 });
  await file(ctxDir, 'dir/readme.md', 'md', { mtime: T0 });
  await dir(ctxDir, 'dir/sub', { mode: 0o750, mtime: T0 + 202 });
  await file(ctxDir, 'dir/sub/b', 'b', { mode: 0o644, mtime: T0 + 203 });
  await symlink(ctxDir, 'dir/link', 'a');
  await symlink(ctxDir, 'dir/passwdlink', '/etc/passwd');
  await file(ctxDir, 'hard/x', 'same inode', { mtime: T0 });
  await hardlink(ctxDir, 'hard/y', 'hard/x');
  await symlink(ctxDir, 'linkfile', 'foo');
  await symlink(ctxDir, 'rootlink', '/');
  await symlink(ctxDir, 'up', '../outside');
  await symlink(ctxDir, 'passwd', '/etc/passwd');
  await file(ctxDir, 'foo1/foo2/bar', 'testing', { mtime: T0 });
  await file(ctxDir, 'foo1/foo2/baz', 'testing2', { mtime: T0 });
  await file(ctxDir, 'sub/dir1/dir2/foo', 'deep', { mtime: T0 });
  await file(ctxDir, 'conflict/data', 'a file where the rootfs has a directory');
  await dir(ctxDir, 'dir2', { mtime: T0 });
  await file(ctxDir, 'dir2/other', 'o');
  await settleTimes();
  ctx = new DirFS(ctxDir);
});

afterAll(async () => {
  await fsp.rm(base, { recursive: true, force: true });
});

type Req = Partial<CopyRequest> & { sources: string[]; dest: string };

async function layer(req: Req): Promise<Map<string, TarRecord>> {
  const { stream } = await copyLayer({ source: ctx, destination: view, sourceRef: 'ctx-ref', ...req });
  return byName(await readTar(stream));
}

function names(m: Map<string, TarRecord>): string[] {
  return [...m.keys()];
}

describe('destinations', () => {
  it('normalizes like BuildKit (relative to WORKDIR, trailing slash kept)', () => {
    expect(normalizeDest('.', '/app')).toBe('/app/');
    expect(normalizeDest('', '/app')).toBe('/app/');
    expect(normalizeDest('x', '/app')).toBe('/app/x');
    expect(normalizeDest('x/', '/app')).toBe('/app/x/');
    expect(normalizeDest('../y/.', '/app/w')).toBe('/app/y/.');
    expect(normalizeDest('/abs//p/', '/app')).toBe('/abs/p/');
    expect(normalizeDest('/', '/app')).toBe('/');
  });

  it('copies a file into a directory named with a trailing slash, creating it', async () => {
    const m = await layer({ sources: ['foo'], dest: '/app/' });
    expect(names(m)).toEqual(['app/', 'app/foo']);
    // A directory the step creates is made now, as BuildKit makes it (SOURCE_DATE_EPOCH aside).
    expect(m.get('app/')).toMatchObject({ type: 'directory', mode: 0o755, uid: 0, gid: 0, mtime: expect.closeTo(Date.now() / 1000, -2) });
    expect(m.get('app/foo')).toMatchObject({ type: 'file', mode: 0o640, uid: 0, gid: 0, mtime: T0 + 100, content: 'foo-contents' });
  });

  it('copies a file to a path, listing the existing parents with their own metadata', async () => {
    const m = await layer({ sources: ['foo'], dest: '/usr/local/bin/tool' });
    expect(names(m)).toEqual(['usr/', 'usr/local/', 'usr/local/bin/', 'usr/local/bin/tool']);
    expect(m.get('usr/local/bin/')).toMatchObject({ mode: 0o755, mtime: T0 });
  });

  it('resolves relative destinations against WORKDIR', async () => {
    const m = await layer({ sources: ['foo'], dest: '.', workdir: '/home/app' });
    expect(names(m)).toEqual(['home/', 'home/app/', 'home/app/foo']);
    expect(m.get('home/app/')).toMatchObject({ mode: 0o750, mtime: T0 + 4 });
    if (IS_ROOT) expect(m.get('home/app/')).toMatchObject({ uid: 1000, gid: 1000 });
  });

  it('keeps an existing destination directory and does not list its other files', async () => {
    const m = await layer({ sources: ['foo'], dest: '/opt/existing/' });
    expect(names(m)).toEqual(['opt/', 'opt/existing/', 'opt/existing/foo']);
    expect(m.get('opt/existing/')).toMatchObject({ mode: 0o700, mtime: T0 + 6 });
    if (IS_ROOT) expect(m.get('opt/existing/')).toMatchObject({ uid: 500, gid: 600 });
  });

  it('resolves a destination through a rootfs symlink inside the rootfs (/var/run -> /run)', async () => {
    const m = await layer({ sources: ['foo'], dest: '/var/run/' });
    expect(names(m)).toEqual(['run/', 'run/foo']);
    expect(m.get('run/')).toMatchObject({ mode: 0o755, mtime: T0 + 2 });
    const deep = await layer({ sources: ['foo'], dest: '/var/run/new/deep/x' });
    expect(names(deep)).toEqual(['run/', 'run/new/', 'run/new/deep/', 'run/new/deep/x']);
    expect(deep.get('run/new/')).toMatchObject({ type: 'directory', mode: 0o755, uid: 0, gid: 0 });
  });

  it('refuses to copy a directory onto a file and a file onto a directory', async () => {
    await expect(layer({ sources: ['dir'], dest: '/etc/passwd' })).rejects.toThrow('cannot copy to non-directory: /etc/passwd');
    await expect(layer({ sources: ['conflict'], dest: '/srv' })).rejects.toThrow('cannot replace to directory /srv/data with file');
    await expect(layer({ sources: ['foo'], dest: '/etc/passwd/x' })).rejects.toThrow('mkdir /etc/passwd: not a directory');
  });
});

describe('sources', () => {
  it('copies the contents of a directory; the created destination takes the source directory time', async () => {
    const m = await layer({ sources: ['dir'], dest: '/data' });
    expect(names(m)).toEqual(['data/', 'data/a', 'data/link', 'data/passwdlink', 'data/readme.md', 'data/sub/', 'data/sub/b']);
    expect(m.get('data/')).toMatchObject({ mode: 0o755, uid: 0, mtime: T0 + 200 });
    expect(m.get('data/a')).toMatchObject({ mode: 0o600, mtime: T0 + 201, content: 'a' });
    expect(m.get('data/sub/')).toMatchObject({ mode: 0o750, mtime: T0 + 202 });
    expect(m.get('data/link')).toMatchObject({ type: 'symlink', linkname: 'a' });
  });

  it('copies a context symlink to /etc/passwd as a symlink, never its target', async () => {
    const m = await layer({ sources: ['dir'], dest: '/data' });
    expect(m.get('data/passwdlink')).toMatchObject({ type: 'symlink', linkname: '/etc/passwd', size: 0 });
  });

  it('follows a top-level source symlink inside the context', async () => {
    const m = await layer({ sources: ['linkfile'], dest: '/d/' });
    expect(m.get('d/linkfile')).toMatchObject({ type: 'file', content: 'foo-contents', mode: 0o640 });
  });

  it('refuses top-level symlinks that lead out of the context, naming them', async () => {
    await expect(layer({ sources: ['passwd'], dest: '/x' })).rejects.toBeInstanceOf(OutsideRootError);
    await expect(layer({ sources: ['passwd'], dest: '/x' })).rejects.toThrow('/passwd is a symlink to "/etc/passwd", which is outside the build context');
    await expect(layer({ sources: ['rootlink/'], dest: '/x' })).rejects.toThrow('/rootlink is a symlink to "/"');
    await expect(layer({ sources: ['up'], dest: '/x' })).rejects.toBeInstanceOf(OutsideRootError);
  });

  it('reports a missing source with buildx wording', async () => {
    const err = await layer({ sources: ['missing'], dest: '/x' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SourceNotFoundError);
    expect((err as Error).message).toBe('failed to compute cache key: failed to calculate checksum of ref ctx-ref: "/missing": not found');
    await expect(layer({ sources: ['foo', 'dir/nope'], dest: '/x/' })).rejects.toThrow('"/dir/nope": not found');
  });

  it('treats ignored context files as missing', async () => {
    const ignored = new DirFS(ctxDir, { ignore: { excludePatterns: ['foo'] } });
    await expect(layer({ source: ignored, sources: ['foo'], dest: '/x' })).rejects.toThrow('"/foo": not found');
  });

  it('expands wildcards with path.Match and accepts no match', async () => {
    expect(names(await layer({ sources: ['*.txt'], dest: '/t/' }))).toEqual(['t/', 't/bar.txt', 't/baz.txt']);
    expect(names(await layer({ sources: ['[ab]ar.txt'], dest: '/w/' }))).toEqual(['w/', 'w/bar.txt']);
    expect(names(await layer({ sources: ['sub/*/dir2/foo'], dest: '/s3/bar' }))).toEqual(['s3/', 's3/bar']);
    expect(names(await layer({ sources: ['sub/*'], dest: '/subdest/' }))).toEqual(['subdest/', 'subdest/dir2/', 'subdest/dir2/foo']);
    expect(names(await layer({ sources: ['nomatch*'], dest: '/nm/' }))).toEqual([]);
    expect(names(await layer({ sources: ['foo', 'nomatch*'], dest: '/' }))).toEqual(['foo']);
    await expect(layer({ sources: ['nodir/*.txt'], dest: '/x/' })).rejects.toThrow('lstat /nodir: no such file or directory');
  });

  it('needs a directory destination for several sources, with BuildKit-compatible exceptions', async () => {
    await expect(layer({ sources: ['foo', 'bar.txt'], dest: '/multi' })).rejects.toThrow(
      'When using COPY with more than one source file, the destination must be a directory and end with a /',
    );
    await expect(layer({ sources: ['*.txt'], dest: '/multi' })).rejects.toThrow('more than one source file');
    // An existing directory is what BuildKit copies into anyway; directories merge.
    expect(names(await layer({ sources: ['foo', 'bar.txt'], dest: '/opt/existing' }))).toContain('opt/existing/bar.txt');
    expect(names(await layer({ sources: ['dir', 'dir2'], dest: '/merged' }))).toContain('merged/other');
    expect(names(await layer({ sources: ['foo', 'bar.txt'], dest: '/multi/' }))).toEqual(['multi/', 'multi/bar.txt', 'multi/foo']);
  });

  it('preserves hardlinks within the copied set', async () => {
    const m = await layer({ sources: ['hard'], dest: '/h/' });
    expect(m.get('h/x')).toMatchObject({ type: 'file', content: 'same inode' });
    expect(m.get('h/y')).toMatchObject({ type: 'link', linkname: 'h/x' });
  });

  it('copies from a layered stage view: whiteouts and opaque dirs respected, owners kept', async () => {
    const from = { source: view, sourceRef: 'stage-ref' };
    expect(names(await layer({ ...from, sources: ['/srv/data'], dest: '/copied' }))).toEqual(['copied/', 'copied/c']);
    const bin = await layer({ ...from, sources: ['/bin/'], dest: '/b/' });
    expect(names(bin)).toEqual(['b/', 'b/busybox', 'b/sh']);
    expect(bin.get('b/sh')).toMatchObject({ type: 'symlink', linkname: 'busybox' });
    const sh = await layer({ ...from, sources: ['/bin/sh'], dest: '/sh2' });
    expect(sh.get('sh2')).toMatchObject({ type: 'file', content: '#!busybox', mode: 0o755 });
    const opt = await layer({ ...from, sources: ['/opt/existing'], dest: '/o2' });
    if (IS_ROOT) expect(opt.get('o2/existingfile')).toMatchObject({ uid: 501, gid: 601 });
    await expect(layer({ ...from, sources: ['/bin/ls'], dest: '/x' })).rejects.toThrow('ref stage-ref: "/bin/ls": not found');
  });
});

describe('--chmod', () => {
  it('applies an octal mode to copied files and directories and to created parents', async () => {
    const m = await layer({ sources: ['dir'], dest: '/cm/new/', options: { chmod: '0640' } });
    expect(m.get('cm/')).toMatchObject({ mode: 0o640 });
    expect(m.get('cm/new/')).toMatchObject({ mode: 0o640, mtime: T0 + 200 });
    expect(m.get('cm/new/a')).toMatchObject({ mode: 0o640 });
    expect(m.get('cm/new/sub/')).toMatchObject({ mode: 0o640 });
    expect(m.get('cm/new/link')).toMatchObject({ type: 'symlink', mode: 0o777 });
  });

  it('keeps special bits for copied nodes but not for created parents', async () => {
    const m = await layer({ sources: ['foo'], dest: '/p/q/foo', options: { chmod: '4755' } });
    expect(m.get('p/')).toMatchObject({ mode: 0o755 });
    expect(m.get('p/q/foo')).toMatchObject({ mode: 0o4755 });
  });

  it('applies symbolic modes per node (created parents stay 0755)', async () => {
    const m = await layer({ sources: ['foo', 'dir'], dest: '/sym/', options: { chmod: 'go-w,u+x,a+X' } });
    expect(m.get('sym/')).toMatchObject({ mode: 0o755 });
    // X looks at the mode before the whole --chmod value (BSD setmode, as BuildKit's parser).
    expect(m.get('sym/foo')).toMatchObject({ mode: 0o740 });
    expect(m.get('sym/a')).toMatchObject({ mode: 0o700 });
    expect(m.get('sym/sub/')).toMatchObject({ mode: 0o751 });
  });

  it('rejects invalid values with BuildKit wording', async () => {
    await expect(layer({ sources: ['foo'], dest: '/x', options: { chmod: '64a' } })).rejects.toThrow(
      "invalid chmod parameter: '64a'. it should be octal string and between 0 and 07777",
    );
    await expect(layer({ sources: ['foo'], dest: '/x', options: { chmod: '10000' } })).rejects.toThrow('between 0 and 07777');
    await expect(layer({ sources: ['foo'], dest: '/x', options: { chmod: 'u+q' } })).rejects.toBeInstanceOf(CopyError);
  });
});

describe('--chown', () => {
  it('resolves names in the destination and owns copied nodes and created parents', async () => {
    const m = await layer({ sources: ['dir'], dest: '/home/app/data', options: { chown: 'app:staff' } });
    expect(m.get('home/app/data/')).toMatchObject({ uid: 1000, gid: 50 });
    expect(m.get('home/app/data/a')).toMatchObject({ uid: 1000, gid: 50 });
    expect(m.get('home/app/data/link')).toMatchObject({ uid: 1000, gid: 50 });
    expect(m.get('home/')).toMatchObject({ uid: 0, gid: 0 });
    const p = await layer({ sources: ['foo'], dest: '/newp/sub/', options: { chown: '1000' } });
    expect(p.get('newp/')).toMatchObject({ uid: 1000, gid: 1000 });
    expect(p.get('newp/sub/foo')).toMatchObject({ uid: 1000, gid: 1000 });
  });

  it('accepts numeric ids as an object', async () => {
    const m = await layer({ sources: ['foo'], dest: '/n', options: { chown: { uid: 7, gid: 8 } } });
    expect(m.get('n')).toMatchObject({ uid: 7, gid: 8 });
  });

  it('refuses unknown names', async () => {
    await expect(layer({ sources: ['foo'], dest: '/x', options: { chown: 'ghost' } })).rejects.toBeInstanceOf(UserLookupError);
  });
});

describe('--parents, --exclude, --link', () => {
  it('keeps the source path below the context root', async () => {
    const m = await layer({ sources: ['foo1/foo2/bar'], dest: '/', options: { parents: true } });
    expect(names(m)).toEqual(['foo1/', 'foo1/foo2/', 'foo1/foo2/bar']);
    const w = await layer({ sources: ['foo1/foo2/ba*'], dest: '.', workdir: '/test', options: { parents: true } });
    expect(names(w)).toEqual(['test/', 'test/foo1/', 'test/foo1/foo2/', 'test/foo1/foo2/bar', 'test/foo1/foo2/baz']);
  });

  it('pivots at /./', async () => {
    const m = await layer({ sources: ['sub/./dir1/dir2'], dest: '/out/', options: { parents: true } });
    expect(names(m)).toEqual(['out/', 'out/dir1/', 'out/dir1/dir2/', 'out/dir1/dir2/foo']);
    await expect(layer({ sources: ['foo1/none'], dest: '/', options: { parents: true } })).rejects.toThrow('"/foo1/none": not found');
  });

  it('filters with --exclude below each source, with ! exceptions', async () => {
    const m = await layer({ sources: ['dir'], dest: '/ex/', options: { exclude: ['*.md', 'sub'] } });
    expect(names(m)).toEqual(['ex/', 'ex/a', 'ex/link', 'ex/passwdlink']);
    const e = await layer({ sources: ['dir'], dest: '/ex/', options: { exclude: ['sub', '!sub/b', '*.md', 'link', 'passwdlink', 'a'] } });
    expect(names(e)).toEqual(['ex/', 'ex/sub/', 'ex/sub/b']);
    expect(e.get('ex/sub/')).toMatchObject({ mode: 0o750, mtime: T0 + 202 });
  });

  it('--link creates the destination fresh, without looking at the rootfs', async () => {
    const m = await layer({ sources: ['foo'], dest: '/var/run/', options: { link: true } });
    expect(names(m)).toEqual(['var/', 'var/run/', 'var/run/foo']);
    expect(m.get('var/')).toMatchObject({ type: 'directory', mode: 0o755, uid: 0, gid: 0, mtime: expect.closeTo(Date.now() / 1000, -2) });
    const o = await layer({ sources: ['foo'], dest: '/opt/existing/', options: { link: true, chmod: '0700' } });
    expect(o.get('opt/')).toMatchObject({ mode: 0o700, uid: 0 });
  });
});

describe('times and heredocs', () => {
  it('keeps source times and clamps them to SOURCE_DATE_EPOCH', async () => {
    const epoch = T0 + 150;
    const m = await layer({ sources: ['foo', 'dir'], dest: '/t/', options: { sourceDateEpoch: epoch } });
    expect(m.get('t/')).toMatchObject({ mtime: epoch });
    expect(m.get('t/foo')).toMatchObject({ mtime: T0 + 100 });
    expect(m.get('t/a')).toMatchObject({ mtime: epoch });
  });

  it('writes heredocs as 0644 files, honouring --chmod and --chown', async () => {
    const contents = [{ path: 'EOT', data: 'hello\n', expand: false }];
    const m = await layer({ sources: [], contents, dest: '/etc/greeting' });
    expect(names(m)).toEqual(['etc/', 'etc/greeting']);
    expect(m.get('etc/greeting')).toMatchObject({ mode: 0o644, uid: 0, content: 'hello\n', mtime: expect.closeTo(Date.now() / 1000, -2) });
    const c = await layer({ sources: [], contents, dest: '/x/', options: { chmod: '0600', chown: 'app', sourceDateEpoch: 5 } });
    expect(c.get('x/EOT')).toMatchObject({ mode: 0o600, uid: 1000, gid: 1000, mtime: 5 });
    await expect(layer({ sources: [], contents: [...contents, { path: 'B', data: '', expand: false }], dest: '/two' })).rejects.toThrow(
      'more than one source file',
    );
  });
});

describe('plan', () => {
  it('returns sorted entries and the normalized destination', async () => {
    const plan = await planCopy({ source: ctx, destination: view, sources: ['foo'], dest: 'bin/', workdir: '/usr/local' });
    try {
      expect(plan.destination).toBe('/usr/local/bin/');
      expect(plan.entries.map((e) => e.path)).toEqual(['/usr', '/usr/local', '/usr/local/bin', '/usr/local/bin/foo']);
    } finally {
      await plan.dispose();
    }
  });

  it('copies onto scratch when there is no destination view', async () => {
    const { stream } = await copyLayer({ source: ctx, sources: ['foo'], dest: '/a/b' });
    expect(names(byName(await readTar(stream)))).toEqual(['a/', 'a/b']);
  });
});
