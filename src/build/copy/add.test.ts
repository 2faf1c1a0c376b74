import { execFileSync, spawnSync } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join, normalize } from 'node:path';
import { gzipSync } from 'node:zlib';
import { pack as tarPack } from 'tar-stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { IS_ROOT, T0, busyboxLayers, byName, file, readTar, tempDir, type TarRecord } from '../../../test/helpers/copy-fixtures.js';
import { DirFS, LayeredFS } from '../fsview/index.js';
import { ChecksumMismatchError, MissingToolError, UnsafeArchiveError, copyLayer, type CopyRequest } from './index.js';

interface TarSpec {
  name: string;
  type?: 'file' | 'directory' | 'symlink' | 'link' | 'fifo';
  content?: string;
  linkname?: string;
  mode?: number;
  uid?: number;
  gid?: number;
  mtime?: number;
}

async function makeTar(entries: TarSpec[]): Promise<Buffer> {
  const pack = tarPack();
  const chunks: Buffer[] = [];
  pack.on('data', (c: unknown) => {
    chunks.push(c as Buffer);
  });
  const done = new Promise<void>((resolve) => {
    pack.on('end', () => resolve());
  });
  for (const e of entries) {
    const header = {
      name: e.name,
      type: e.type ?? 'file',
      mode: e.mode ?? (e.type === 'directory' ? 0o755 : 0o644),
      uid: e.uid ?? 0,
      gid: e.gid ?? 0,
      mtime: new Date((e.mtime ?? T0) * 1000),
      ...(e.linkname ? { linkname: e.linkname } : {}),
    };
    await new Promise<void>((resolve, reject) => {
      const cb = (err?: Error | null) => (err ? reject(err) : resolve());
      if (header.type === 'file') pack.entry(header, e.content ?? '', cb);
      else pack.entry(header, cb);
    });
  }
  pack.finalize();
  await done;
  return Buffer.concat(chunks);
}

function compressWith(program: string, data: Buffer): Buffer {
  return execFileSync(program, ['-c'], { input: data });
}

const SAMPLE: TarSpec[] = [
  { name: 'dir/', type: 'directory', mode: 0o750, uid: 1000, gid: 1000, mtime: T0 + 1 },
  { name: 'dir/f', content: 'from the archive', mode: 0o640, uid: 1000, gid: 1000, mtime: T0 + 2 },
  { name: 'link', type: 'symlink', linkname: 'dir/f' },
  { name: 'abs', type: 'symlink', linkname: '/etc/passwd' },
  { name: 'hl', type: 'link', linkname: 'dir/f', mode: 0o640, uid: 1000, gid: 1000, mtime: T0 + 2 },
  { name: 'fifo', type: 'fifo' },
];

let base: string;
let ctxDir: string;
let ctx: DirFS;
let view: LayeredFS;
let server: Server;
let origin: string;
let bareRepo: string;
let commitV1 = '';
let sampleTar: Buffer;

beforeAll(async () => {
  base = await tempDir();
  view = new LayeredFS(await busyboxLayers(join(base, 'rootfs')));
  ctxDir = join(base, 'ctx');
  sampleTar = await makeTar(SAMPLE);
  await file(ctxDir, 'plain.tar', sampleTar);
  await file(ctxDir, 'a.tar.gz', gzipSync(sampleTar));
  await file(ctxDir, 'data.bin', gzipSync(sampleTar));
  await file(ctxDir, 'a.tar.bz2', compressWith('bzip2', sampleTar));
  await file(ctxDir, 'a.tar.xz', compressWith('xz', sampleTar));
  await file(ctxDir, 'a.tar.zst', compressWith('zstd', sampleTar));
  await file(ctxDir, 'fake.tar.gz', 'not an archive at all');
  await file(ctxDir, 'empty.tar', Buffer.alloc(1024));
  await file(ctxDir, 'evil.tar', await makeTar([{ name: 'ok' }, { name: '../escape', content: 'x' }]));
  await file(ctxDir, 'evil-link.tar', await makeTar([{ name: 'l', type: 'symlink', linkname: '../../etc' }]));
  await file(ctxDir, 'evil-hard.tar', await makeTar([{ name: 'h', type: 'link', linkname: '../../etc/passwd' }]));
  await file(ctxDir, 'whiteout.tar', await makeTar([{ name: 'd/.wh.gone' }]));
  await file(ctxDir, 'abs.tar', await makeTar([{ name: '/etc/x', content: 'inside' }, { name: 'deep/er/y', content: 'y' }]));
  await file(ctxDir, 'chroot.tar', await makeTar([{ name: 'r', type: 'symlink', linkname: '/' }, { name: 'r/etc/x', content: 'stays in dest' }]));
  ctx = new DirFS(ctxDir);

  bareRepo = await makeRepo(join(base, 'git'));
  server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    const p = url.pathname;
    if (p === '/files/hello.txt') {
      res.writeHead(200, { 'last-modified': new Date((T0 + 5) * 1000).toUTCString(), 'content-disposition': 'attachment; filename="other.txt"' });
      res.end('hello');
    } else if (p === '/') {
      res.end('root');
    } else if (p === '/redirect') {
      res.writeHead(302, { location: '/files/hello.txt' });
      res.end();
    } else if (p === '/archive.tar.gz') {
      res.end(gzipSync(sampleTar));
    } else if (p.startsWith('/repo.git/')) {
      const rel = normalize(decodeURIComponent(p.slice('/repo.git/'.length)));
      fsp.readFile(join(bareRepo, rel)).then(
        (data) => res.end(data),
        () => {
          res.writeHead(404);
          res.end();
        },
      );
    } else {
      res.writeHead(404);
      res.end('nope');
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  await new Promise((resolve) => server?.close(resolve));
  await fsp.rm(base, { recursive: true, force: true });
});

async function makeRepo(dir: string): Promise<string> {
  const work = join(dir, 'work');
  await fsp.mkdir(work, { recursive: true });
  const env = {
    ...process.env,
    GIT_AUTHOR_NAME: 't',
    GIT_AUTHOR_EMAIL: 't@example.com',
    GIT_COMMITTER_NAME: 't',
    GIT_COMMITTER_EMAIL: 't@example.com',
    GIT_AUTHOR_DATE: `${T0 + 50} +0000`,
    GIT_COMMITTER_DATE: `${T0 + 50} +0000`,
  };
  const git = (...args: string[]) => execFileSync('git', args, { cwd: work, env }).toString();
  git('init', '-q', '-b', 'main');
  await file(work, 'a', 'A');
  await file(work, 'dir/b', '#!/bin/sh\n', { mode: 0o755 });
  await fsp.symlink('a', join(work, 'link'));
  git('add', '-A');
  git('commit', '-q', '-m', 'one');
  git('tag', 'v1');
  commitV1 = git('rev-parse', 'HEAD').trim();
  await file(work, 'later', 'L');
  git('add', '-A');
  git('commit', '-q', '-m', 'two');
  const bare = join(dir, 'repo.git');
  execFileSync('git', ['clone', '-q', '--bare', work, bare]);
  execFileSync('git', ['update-server-info'], { cwd: bare });
  return bare;
}

type Req = Partial<CopyRequest> & { sources: string[]; dest: string };

async function add(req: Req): Promise<Map<string, TarRecord>> {
  const { stream } = await copyLayer({ instruction: 'ADD', source: ctx, destination: view, tempDir: join(base, 'tmp'), ...req });
  return byName(await readTar(stream));
}

function names(m: Map<string, TarRecord>): string[] {
  return [...m.keys()];
}

describe('ADD local archives', () => {
  it.each(['plain.tar', 'a.tar.gz', 'a.tar.bz2', 'a.tar.xz', 'a.tar.zst', 'data.bin'])('unpacks %s into the destination', async (name) => {
    const m = await add({ sources: [name], dest: '/x' });
    expect(names(m)).toEqual(['x/', 'x/abs', 'x/dir/', 'x/dir/f', 'x/hl', 'x/link']);
    expect(m.get('x/')).toMatchObject({ type: 'directory', mode: 0o755, uid: 0 });
    expect(m.get('x/dir/')).toMatchObject({ mode: 0o750, uid: 1000, gid: 1000, mtime: T0 + 1 });
    expect(m.get('x/dir/f')).toMatchObject({ type: 'file', mode: 0o640, uid: 1000, gid: 1000, mtime: T0 + 2, content: 'from the archive' });
    expect(m.get('x/link')).toMatchObject({ type: 'symlink', linkname: 'dir/f' });
    expect(m.get('x/abs')).toMatchObject({ type: 'symlink', linkname: '/etc/passwd' });
    expect(m.get('x/hl')).toMatchObject({ type: 'link', linkname: 'x/dir/f' });
  });

  it('copies archives as files with --unpack=false, and with COPY', async () => {
    expect(names(await add({ sources: ['a.tar.gz'], dest: '/x/', options: { unpack: false } }))).toEqual(['x/', 'x/a.tar.gz']);
    expect(names(await add({ instruction: 'COPY', sources: ['a.tar.gz'], dest: '/x/' }))).toEqual(['x/', 'x/a.tar.gz']);
  });

  it('unpacks several archives into one destination without a trailing slash, but not archives mixed with files', async () => {
    expect(names(await add({ sources: ['plain.tar', 'abs.tar'], dest: '/both' }))).toContain('both/etc/x');
    await expect(add({ sources: ['plain.tar', 'fake.tar.gz'], dest: '/both' })).rejects.toThrow(
      'When using ADD with more than one source file, the destination must be a directory and end with a /',
    );
  });

  it('detects archives by content: a misnamed file and an empty tar are copied as they are', async () => {
    expect(names(await add({ sources: ['fake.tar.gz', 'empty.tar'], dest: '/x/' }))).toEqual(['x/', 'x/empty.tar', 'x/fake.tar.gz']);
  });

  it('keeps an existing destination directory and applies --chown to unpacked entries only', async () => {
    const m = await add({ sources: ['abs.tar'], dest: '/opt/existing', options: { chown: 'web' } });
    expect(m.get('opt/existing/')).toMatchObject({ mode: 0o700 });
    if (IS_ROOT) expect(m.get('opt/existing/')).toMatchObject({ uid: 500, gid: 600 });
    // A leading / stays inside the destination; implied parents are 0755 root.
    expect(m.get('opt/existing/etc/x')).toMatchObject({ content: 'inside', uid: 33, gid: 33 });
    expect(m.get('opt/existing/deep/')).toMatchObject({ mode: 0o755, uid: 0, gid: 0 });
    expect(m.get('opt/existing/deep/er/y')).toMatchObject({ uid: 33 });
  });

  it('resolves archive symlinks inside the destination, as a chrooted untar does', async () => {
    const m = await add({ sources: ['chroot.tar'], dest: '/unpacked/' });
    expect(m.get('unpacked/etc/x')).toMatchObject({ content: 'stays in dest' });
    expect(m.has('etc/x')).toBe(false);
  });

  it('refuses entries that climb out, escaping links and whiteout names', async () => {
    await expect(add({ sources: ['evil.tar'], dest: '/x' })).rejects.toBeInstanceOf(UnsafeArchiveError);
    await expect(add({ sources: ['evil.tar'], dest: '/x' })).rejects.toThrow('refusing to unpack evil.tar: entry "../escape" is outside of /x');
    await expect(add({ sources: ['evil-link.tar'], dest: '/x' })).rejects.toThrow('invalid symlink "l" -> "../../etc"');
    await expect(add({ sources: ['evil-hard.tar'], dest: '/x' })).rejects.toThrow('invalid hardlink "h" -> "../../etc/passwd"');
    await expect(add({ sources: ['whiteout.tar'], dest: '/x' })).rejects.toThrow('whiteout name');
  });

  it('reports skipped device and fifo entries', async () => {
    const warnings: string[] = [];
    await add({ sources: ['plain.tar'], dest: '/x', onWarning: (w) => warnings.push(w.message) });
    expect(warnings).toEqual(['plain.tar: fifo "fifo" skipped']);
  });
});

describe('ADD URLs', () => {
  it('downloads into a directory under the URL file name, 0600, with Last-Modified', async () => {
    const m = await add({ sources: [`${origin}/files/hello.txt`], dest: '/dl/' });
    expect(names(m)).toEqual(['dl/', 'dl/hello.txt']);
    expect(m.get('dl/hello.txt')).toMatchObject({ type: 'file', mode: 0o600, uid: 0, gid: 0, mtime: T0 + 5, content: 'hello' });
  });

  it('writes to the destination path when it does not end in /, and follows redirects', async () => {
    const m = await add({ sources: [`${origin}/redirect`], dest: '/etc/fetched', options: { chmod: '0755' } });
    expect(m.get('etc/fetched')).toMatchObject({ content: 'hello', mode: 0o755 });
    expect(names(await add({ sources: [`${origin}/`], dest: '/u/' }))).toEqual(['u/', 'u/__unnamed__']);
  });

  it('verifies --checksum and names the URL and both digests on mismatch', async () => {
    const good = 'sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824';
    const url = `${origin}/files/hello.txt`;
    expect(names(await add({ sources: [url], dest: '/c/', options: { checksum: good } }))).toEqual(['c/', 'c/hello.txt']);
    const bad = `sha256:${'0'.repeat(64)}`;
    const err = await add({ sources: [url], dest: '/c/', options: { checksum: bad } }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ChecksumMismatchError);
    expect((err as Error).message).toBe(`digest mismatch for ${url}: ${good} (expected: ${bad})`);
    await expect(add({ sources: [url], dest: '/c/', options: { checksum: 'abc' } })).rejects.toThrow('invalid checksum digest format');
  });

  it('does not unpack remote archives unless --unpack=true', async () => {
    expect(names(await add({ sources: [`${origin}/archive.tar.gz`], dest: '/r/' }))).toEqual(['r/', 'r/archive.tar.gz']);
    const m = await add({ sources: [`${origin}/archive.tar.gz`], dest: '/r/', options: { unpack: true } });
    expect(m.get('r/dir/f')).toMatchObject({ content: 'from the archive' });
  });

  it('fails on error statuses, and COPY refuses URLs', async () => {
    await expect(add({ sources: [`${origin}/missing`], dest: '/x' })).rejects.toThrow(`failed to download ${origin}/missing: invalid response status 404`);
    await expect(add({ instruction: 'COPY', sources: [`${origin}/`], dest: '/x' })).rejects.toThrow("source can't be a URL for COPY");
    await expect(add({ instruction: 'COPY', sources: ['foo'], dest: '/x', options: { checksum: 'sha256:00' } })).rejects.toThrow(
      "checksum can't be specified for COPY",
    );
  });
});

describe('ADD git repositories', () => {
  const gitOk = spawnSync('git', ['--version']).status === 0;

  it.runIf(gitOk)('checks out a tag with normalized modes and the commit time, without .git', async () => {
    const m = await add({ sources: [`${origin}/repo.git#v1`], dest: '/src/' });
    expect(names(m)).toEqual(['src/', 'src/a', 'src/dir/', 'src/dir/b', 'src/link']);
    expect(m.get('src/a')).toMatchObject({ content: 'A', mode: 0o644, uid: 0, mtime: T0 + 50 });
    expect(m.get('src/dir/b')).toMatchObject({ mode: 0o755 });
    expect(m.get('src/link')).toMatchObject({ type: 'symlink', linkname: 'a' });
    // The destination did not exist: it takes the checkout root's metadata.
    expect(m.get('src/')).toMatchObject({ mode: 0o755, mtime: T0 + 50 });
  });

  it.runIf(gitOk)('takes a sub-directory of a branch, keeps .git on request, and checks the commit', async () => {
    expect(names(await add({ sources: [`${origin}/repo.git#main:dir`], dest: '/sub/' }))).toEqual(['sub/', 'sub/b']);
    const kept = await add({ sources: [`${origin}/repo.git#v1`], dest: '/k/', options: { keepGitDir: true } });
    expect(kept.has('k/.git/')).toBe(true);
    expect(names(await add({ sources: [`${origin}/repo.git#v1`], dest: '/s/', options: { checksum: commitV1.slice(0, 12) } }))).toContain('s/a');
    await expect(add({ sources: [`${origin}/repo.git#v1`], dest: '/s/', options: { checksum: 'deadbeef' } })).rejects.toThrow(
      `expected checksum to match deadbeef, got ${commitV1}`,
    );
  });

  it('names the missing git program', async () => {
    const err = await add({ sources: [`${origin}/repo.git#v1`], dest: '/g/', gitCommand: 'kiln-no-such-git' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(MissingToolError);
    expect((err as MissingToolError).describe()).toBe(
      `ADD ${origin}/repo.git#v1 needs the kiln-no-such-git program, which is not installed (hint: install it (Debian: apt-get install git))`,
    );
  });

  it('refuses git sources in COPY', async () => {
    await expect(add({ instruction: 'COPY', sources: [`${origin}/repo.git`], dest: '/g/' })).rejects.toThrow("source can't be a git ref for COPY");
  });
});

describe('temporary files', () => {
  it('are removed once the layer stream is consumed', async () => {
    const tmp = join(base, 'tmp-cleanup');
    const { stream } = await copyLayer({ instruction: 'ADD', source: ctx, destination: view, tempDir: tmp, sources: ['a.tar.gz'], dest: '/x' });
    await readTar(stream);
    await new Promise((r) => setTimeout(r, 50));
    expect(await fsp.readdir(tmp)).toEqual([]);
  });
});
