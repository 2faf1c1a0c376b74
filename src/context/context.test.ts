import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { InputFileError } from '../errors.js';
import { IgnorePatternError } from './ignore/index.js';
import {
  ContextPathNotFoundError,
  ContextSymlinkEscapeError,
  ContextSymlinkLoopError,
  diffManifests,
  openContext,
  type BuildContext,
  type OpenContextOptions,
} from './index.js';

let root: string;
let ctxDir: string;
let cacheDir: string;
const opened: BuildContext[] = [];

beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), 'kiln-context-'));
  ctxDir = join(root, 'ctx');
  cacheDir = join(root, 'cache');
  await mkdir(ctxDir);
});
afterEach(async () => {
  await Promise.all(opened.splice(0).map((c) => c.close()));
  await rm(root, { recursive: true, force: true });
});

/** `dir/`, `name -> target` (symlink), `name=content`, or `name` (empty file). */
async function tree(...entries: string[]): Promise<void> {
  for (const e of entries) {
    const [path, target] = e.split(' -> ') as [string, string | undefined];
    if (target !== undefined) await symlink(target, join(ctxDir, path));
    else if (path.endsWith('/')) await mkdir(join(ctxDir, path), { recursive: true });
    else {
      const eq = path.indexOf('=');
      await writeFile(join(ctxDir, eq < 0 ? path : path.slice(0, eq)), eq < 0 ? '' : path.slice(eq + 1).replaceAll('\\n', '\n'));
    }
  }
}

async function open(options: Partial<OpenContextOptions> = {}): Promise<BuildContext> {
  const c = await openContext(ctxDir, { cacheDir, ...options });
  opened.push(c);
  return c;
}

async function list(c: BuildContext): Promise<string[]> {
  const out: string[] = [];
  for await (const e of c.entries()) out.push(`${e.type} ${e.path}`);
  return out;
}

describe('ignore rules', () => {
  it('applies .dockerignore with exceptions, as BuildKit sends the context', async () => {
    await tree('.dockerignore=node_modules\\n*.log\\n!keep.log\\ndocs\\n!docs/keep\\n', 'Dockerfile=FROM scratch');
    await tree('node_modules/', 'node_modules/m.js', 'a.log', 'keep.log', 'docs/', 'docs/x', 'docs/keep/', 'docs/keep/k', 'src/', 'src/a.ts');
    const c = await open();
    expect(c.ignoreFile?.path).toBe(join(ctxDir, '.dockerignore'));
    const expected = [
      'file .dockerignore', 'file Dockerfile', 'dir docs', 'dir docs/keep', 'file docs/keep/k', 'file keep.log', 'dir src', 'file src/a.ts',
    ];
    expect(await list(c)).toEqual(expected); // streamed from the walk
    expect(await c.exists('node_modules/m.js')).toBe(false);
    expect(await c.exists('keep.log')).toBe(true);
    expect(await c.exists('docs/x')).toBe(false);
    expect(await list(c)).toEqual(expected); // replayed from the scan
    expect(Object.keys(await c.manifest('.'))).toEqual([
      '.dockerignore', 'Dockerfile', 'docs/', 'docs/keep/', 'docs/keep/k', 'keep.log', 'src/', 'src/a.ts',
    ]);
    await expect(c.checksum('a.log')).rejects.toBeInstanceOf(ContextPathNotFoundError);
  });

  it('prefers <Dockerfile>.dockerignore next to the Dockerfile', async () => {
    await tree('.dockerignore=a', 'Dockerfile.dockerignore=b', 'app.Dockerfile.dockerignore=c', 'a', 'b', 'c');
    expect(await list(await open())).toEqual([
      'file .dockerignore', 'file Dockerfile.dockerignore', 'file a', 'file app.Dockerfile.dockerignore', 'file c',
    ]);
    const app = await open({ dockerfilePath: join(ctxDir, 'app.Dockerfile') });
    expect(app.ignoreFile?.patterns).toEqual(['c']);
    expect(await app.exists('c')).toBe(false);
    expect(await app.exists('a')).toBe(true);
    const stdin = await open({ dockerfilePath: '-' });
    expect(stdin.ignoreFile?.patterns).toEqual(['a']);
    expect(await stdin.exists('b')).toBe(true);
    expect((await open({ ignoreFile: null })).excludePatterns).toEqual([]);
  });

  it('lets the frontend read an excluded Dockerfile while COPY does not see it', async () => {
    await tree('.dockerignore=Dockerfile\\n.dockerignore\\n', 'Dockerfile=FROM scratch\\n', 'app');
    const c = await open();
    expect((await c.readDockerfile()).toString()).toBe('FROM scratch\n');
    expect(await c.exists('Dockerfile')).toBe(false);
    expect(await c.exists('.dockerignore')).toBe(false);
    expect(await list(c)).toEqual(['file app']);
    expect(Object.keys(await c.manifest('.'))).toEqual(['app']);
  });

  it('rejects invalid patterns and bad contexts with typed errors', async () => {
    await tree('f');
    await expect(open({ ignoreFile: { path: 'x', patterns: ['!'] } })).rejects.toBeInstanceOf(IgnorePatternError);
    await expect(openContext(join(ctxDir, 'missing'), { cacheDir })).rejects.toBeInstanceOf(InputFileError);
    await expect(openContext(join(ctxDir, 'f'), { cacheDir })).rejects.toBeInstanceOf(InputFileError);
  });
});

describe('symlinks', () => {
  it('reports symlinks as symlinks and never follows them while scanning', async () => {
    await tree('real/', 'real/f=1', 'link -> real', 'out -> ../../etc', 'abs -> /etc/passwd');
    const c = await open();
    expect(await list(c)).toEqual(['symlink abs', 'symlink link', 'symlink out', 'dir real', 'file real/f']);
    // Links that point out are legal in the context: checksums hash the links themselves.
    expect(await c.checksum('.')).toMatch(/^sha256:/);
    expect(await c.checksum('out')).toMatch(/^sha256:/);
  });

  it('resolves within the context, the context directory acting as /', async () => {
    await tree('target/', 'target/file=1', 'l1/', 'l1/rel -> ../target/file', 'l1/abs -> /target/file', 'l1/dir -> ../target');
    await tree('l2/', 'l2/l1 -> ../l1', 'l3 -> l2/l1/dir', 'loop -> loop');
    const c = await open();
    for (const p of ['l1/rel', 'l1/abs', 'l1/dir/file', 'l2/l1/rel', 'l2/l1/dir/file', 'l3/file', '/l3/../l3/file']) {
      expect(await c.resolveInContext(p)).toBe('target/file');
      expect(await c.checksum(p, { followLinks: true })).toBe(await c.checksum('target/file'));
    }
    expect(await c.resolveInContext('l1/rel', { followLinks: false })).toBe('l1/rel');
    expect(await c.resolveInContext('l2/l1/rel', { followLinks: false })).toBe('l1/rel');
    expect(await c.resolveInContext('.')).toBe('.');
    expect(await c.resolveInContext('l1/dir/nothing')).toBe('target/nothing');
    expect(await c.exists('l3/file')).toBe(true);
    expect(await c.exists('l3/nothing')).toBe(false);
    await expect(c.resolveInContext('loop')).rejects.toBeInstanceOf(ContextSymlinkLoopError);
  });

  it('refuses to follow a link out of the context and names it', async () => {
    await tree('d/', 'd/up -> ../../outside', 'd/ok -> ../f', 'f=1', 'root -> /../x');
    const c = await open();
    expect(await c.resolveInContext('d/ok')).toBe('f');
    const err = await c.resolveInContext('d/up/x').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ContextSymlinkEscapeError);
    expect((err as ContextSymlinkEscapeError).link).toBe('d/up');
    expect((err as ContextSymlinkEscapeError).target).toBe('../../outside');
    await expect(c.checksum('d/up', { followLinks: true })).rejects.toBeInstanceOf(ContextSymlinkEscapeError);
    await expect(c.checksum('root', { followLinks: true })).rejects.toBeInstanceOf(ContextSymlinkEscapeError);
    // Not following it is fine: the link is copied as a link.
    expect(await c.resolveInContext('d/up', { followLinks: false })).toBe('d/up');
    expect(await c.checksum('d')).toMatch(/^sha256:/);
  });

  it('treats a link to an excluded file as dangling', async () => {
    await tree('.dockerignore=secret', 'secret=x', 'l -> secret');
    const c = await open();
    expect(await c.exists('l')).toBe(true);
    expect(await c.exists('l', { followLinks: true })).toBe(false);
    await expect(c.checksum('l', { followLinks: true })).rejects.toBeInstanceOf(ContextPathNotFoundError);
  });
});

describe('manifests', () => {
  it('names the files that changed between runs', async () => {
    await tree('src/', 'src/a.ts=a', 'src/b.ts=b', 'src/lib/', 'src/lib/c.ts=c', 'README=r');
    const before = await (await open()).manifest(['src', 'README']);
    expect(Object.keys(before)).toEqual(['README', 'src/', 'src/a.ts', 'src/b.ts', 'src/lib/', 'src/lib/c.ts']);
    await writeFile(join(ctxDir, 'src/a.ts'), 'A');
    await rm(join(ctxDir, 'src/b.ts'));
    await writeFile(join(ctxDir, 'src/lib/d.ts'), 'd');
    const c = await open();
    expect(await c.changedFiles(before, ['src', 'README'])).toEqual({
      added: ['src/lib/d.ts'],
      removed: ['src/b.ts'],
      changed: ['src/a.ts'],
    });
    const wild = await c.manifest('src/*.ts');
    expect(Object.keys(wild)).toEqual(['src/a.ts']);
    expect(diffManifests(wild, wild)).toEqual({ added: [], removed: [], changed: [] });
  });
});

describe('directory checksums across builds', () => {
  it('are remembered, and a directory whose metadata changed is examined again', async () => {
    const { setAttributeSync } = await import('@napi-rs/xattr');
    const { chmod } = await import('node:fs/promises');
    await tree('app/', 'app/lib/', 'app/lib/a.txt=a', 'app/b.txt=b');
    const first = await (await open()).checksum('app');
    // Let the index entries age past the racy window, then check that a fresh context agrees.
    await new Promise((r) => setTimeout(r, 50));
    const again = await open();
    expect(await again.checksum('app')).toBe(first);
    await again.close();
    expect(await (await open()).checksum('app')).toBe(first);

    // A directory's own xattrs are part of its checksum: setting one changes ctime, so it is read anew.
    let xattrDigest = first;
    try {
      setAttributeSync(join(ctxDir, 'app/lib'), 'user.kiln.test', Buffer.from('1'));
      xattrDigest = await (await open()).checksum('app');
      expect(xattrDigest).not.toBe(first);
    } catch (err) {
      if (!String(err).includes('os error 95')) throw err; // no user xattrs on this file system
    }
    await chmod(join(ctxDir, 'app/lib'), 0o700);
    const chmodded = await (await open()).checksum('app');
    expect(chmodded).not.toBe(xattrDigest);
    expect(chmodded).not.toBe(first);
  });
});
