import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  chmodSync,
  lchownSync,
  linkSync,
  lstatSync,
  lutimesSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  symlinkSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { getAttributeSync, listAttributesSync, setAttributeSync } from '@napi-rs/xattr';
import { extract as tarExtract } from 'tar-stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LayerSourceError } from './errors.js';
import { extractLayer } from './extract.js';
import { compressLayer } from './compress.js';
import { headerXattrs, type Header } from './tar.js';
import { writeLayerTar, writeTarEntries, type TarEntrySpec } from './writer.js';

const isRoot = process.getuid?.() === 0;
let work: string;

beforeAll(() => {
  work = mkdtempSync(join(tmpdir(), 'kiln-layer-rt-'));
});
afterAll(() => {
  rmSync(work, { recursive: true, force: true });
});

function fresh(name: string): string {
  const dir = join(work, name);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  return dir;
}

async function toBuffer(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

async function headers(tar: Buffer): Promise<Header[]> {
  const out: Header[] = [];
  const ex = tarExtract();
  Readable.from([tar]).pipe(ex as unknown as Writable);
  for await (const entry of ex) {
    out.push(entry.header);
    entry.resume();
  }
  return out;
}

// A capability set (cap_net_raw, cap_setuid) as the kernel stores it: a binary struct, not UTF-8.
const CAPS = Buffer.from([0x01, 0x00, 0x00, 0x02, 0x80, 0x20, 0x00, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);

/** A tree with every kind of entry a layer carries. */
function buildTree(root: string): void {
  mkdirSync(join(root, 'etc/app'), { recursive: true });
  writeFileSync(join(root, 'etc/app/config'), 'key=value\n');
  mkdirSync(join(root, 'usr/bin'), { recursive: true });
  writeFileSync(join(root, 'usr/bin/tool'), Buffer.alloc(300 * 1024, 7)); // streamed, not read in one go
  chmodSync(join(root, 'usr/bin/tool'), 0o4755);
  writeFileSync(join(root, 'usr/bin/group-tool'), '#!/bin/sh\n');
  chmodSync(join(root, 'usr/bin/group-tool'), 0o2711);
  mkdirSync(join(root, 'tmp'));
  chmodSync(join(root, 'tmp'), 0o1777);
  writeFileSync(join(root, 'no-perms'), 'x');
  chmodSync(join(root, 'no-perms'), 0o000);
  linkSync(join(root, 'etc/app/config'), join(root, 'etc/app/config.link'));
  symlinkSync('app/config', join(root, 'etc/config'));
  symlinkSync('/does/not/exist', join(root, 'dangling'));
  symlinkSync(`${'t'.repeat(150)}/target`, join(root, 'long-link')); // beyond ustar's 100-byte linkname
  const long = join(root, 'd'.repeat(120), 'e'.repeat(90));
  mkdirSync(long, { recursive: true });
  writeFileSync(join(long, 'fïlé-ünïcødé'), 'long');
  writeFileSync(join(root, 'empty'), '');
  setAttributeSync(join(root, 'etc/app/config'), 'user.note', 'hello');
  setAttributeSync(join(root, 'usr/bin/group-tool'), 'user.binary', Buffer.from([0xff, 0x00, 0x80, 0x0a]));
  spawnSync('mkfifo', [join(root, 'pipe')]);
  if (isRoot) {
    spawnSync('mknod', [join(root, 'null'), 'c', '1', '3']);
    spawnSync('mknod', [join(root, 'loop9'), 'b', '7', '9']);
    lchownSync(join(root, 'etc/app'), 1000, 1000);
    lchownSync(join(root, 'etc/app/config'), 1000, 1001);
    lchownSync(join(root, 'etc/config'), 1002, 1003);
    lchownSync(join(root, 'no-perms'), 300000, 400000); // beyond ustar's 6 octal digits: PAX uid/gid
    setAttributeSync(join(root, 'usr/bin/tool'), 'security.capability', CAPS);
  }
  let t = 1_600_000_000;
  for (const p of walk(root).reverse()) lutimesSync(join(root, p), t, t++);
}

function walk(root: string, rel = ''): string[] {
  const out: string[] = [];
  for (const name of readdirSync(join(root, rel)).sort()) {
    const p = rel ? `${rel}/${name}` : name;
    out.push(p);
    if (lstatSync(join(root, p)).isDirectory()) out.push(...walk(root, p));
  }
  return out;
}

interface Snapshot {
  type: string;
  mode: number;
  uid: number;
  gid: number;
  mtime: number;
  size: number;
  content?: string;
  link?: string;
  rdev?: number;
  xattrs: Record<string, string>;
}

function snapshot(root: string): Record<string, Snapshot> {
  const out: Record<string, Snapshot> = {};
  for (const p of walk(root)) {
    const path = join(root, p);
    const st = lstatSync(path);
    const type = st.isDirectory() ? 'dir' : st.isSymbolicLink() ? 'symlink' : st.isFIFO() ? 'fifo' : st.isCharacterDevice() ? 'char' : st.isBlockDevice() ? 'block' : 'file';
    const xattrs: Record<string, string> = {};
    for (const name of listAttributesSync(path).sort()) xattrs[name] = getAttributeSync(path, name)!.toString('hex');
    out[p] = {
      type,
      mode: st.mode & 0o7777,
      uid: st.uid,
      gid: st.gid,
      mtime: Math.floor(st.mtimeMs / 1000),
      size: type === 'file' ? st.size : 0,
      ...(type === 'file' ? { content: createHash('sha256').update(readFileSync(path)).digest('hex') } : {}),
      ...(type === 'symlink' ? { link: readlinkSync(path) } : {}),
      ...(type === 'char' || type === 'block' ? { rdev: st.rdev } : {}),
      xattrs,
    };
  }
  return out;
}

describe('writeLayerTar → extractLayer', () => {
  it('keeps paths, types, owners, modes, links, xattrs and mtimes', async () => {
    const src = fresh('rt-src');
    buildTree(src);
    const tar = await toBuffer(writeLayerTar(src));
    const dst = fresh('rt-dst');
    const result = await extractLayer(Readable.from([tar]), dst);
    expect(result.entries).toBeGreaterThan(15);
    expect(snapshot(dst)).toEqual(snapshot(src));
    const a = lstatSync(join(dst, 'etc/app/config'));
    const b = lstatSync(join(dst, 'etc/app/config.link'));
    expect(b.ino).toBe(a.ino);
    expect(a.nlink).toBe(2);
    if (isRoot) expect(getAttributeSync(join(dst, 'usr/bin/tool'), 'security.capability')).toEqual(CAPS);
  });

  it('writes BuildKit-style names and headers', async () => {
    const src = fresh('hdr-src');
    buildTree(src);
    const list = await headers(await toBuffer(writeLayerTar(src)));
    const names = list.map((h) => h.name);
    // byte order of the names as written, directories with a trailing slash, nothing absolute or ./
    const sorted = [...names].sort((x, y) => Buffer.compare(Buffer.from(x), Buffer.from(y)));
    expect(names).toEqual(sorted);
    expect(names.every((n) => !n.startsWith('/') && !n.startsWith('./'))).toBe(true);
    for (const h of list) {
      expect(h.name.endsWith('/')).toBe(h.type === 'directory');
      expect(h.uname).toBe('');
      expect(h.gname).toBe('');
    }
    const byName = new Map(list.map((h) => [h.name, h]));
    expect(byName.get('etc/app/config')?.type).toBe('file');
    expect(byName.get('etc/app/config.link')).toMatchObject({ type: 'link', linkname: 'etc/app/config', size: 0 });
    expect(byName.get('etc/config')).toMatchObject({ type: 'symlink', linkname: 'app/config' });
    expect(byName.get('pipe')?.type).toBe('fifo');
    expect(byName.get('no-perms')?.mode).toBe(0);
    expect(byName.get('tmp/')?.mode).toBe(0o1777);
    expect(names).toContain(`${'d'.repeat(120)}/${'e'.repeat(90)}/fïlé-ünïcødé`);
    expect(headerXattrs(byName.get('usr/bin/group-tool')!)).toEqual([['user.binary', Buffer.from([0xff, 0x00, 0x80, 0x0a])]]);
    if (isRoot) {
      expect(byName.get('null')).toMatchObject({ type: 'character-device', devmajor: 1, devminor: 3 });
      expect(byName.get('loop9')).toMatchObject({ type: 'block-device', devmajor: 7, devminor: 9 });
      expect((byName.get('no-perms')!.pax as Record<string, string>).uid).toBe('300000');
      expect(headerXattrs(byName.get('usr/bin/tool')!)).toEqual([['security.capability', CAPS]]);
    }
    // GNU tar reads it, names and all
    const gnu = spawnSync('tar', ['-t'], { input: await toBuffer(writeLayerTar(src)), encoding: 'utf8' });
    expect(gnu.status).toBe(0);
    expect(gnu.stdout.trim().split('\n')).toEqual(names);
  });

  it('is deterministic: same tree, same digest, whatever the creation order', async () => {
    // The same content created in another order gives other inode numbers and readdir order.
    const a = fresh('det-a');
    const b = fresh('det-b');
    const files = ['z', 'm', 'a', 'k'];
    for (const [dir, order] of [[a, files], [b, [...files].reverse()]] as const) {
      mkdirSync(join(dir, 'extra'));
      for (const f of order) writeFileSync(join(dir, 'extra', f), f);
      buildTree(dir);
    }
    const digest = async (dir: string) => {
      const { stream, result } = compressLayer(writeLayerTar(dir), 'gzip');
      await pipeline(stream, new Writable({ write: (_c, _e, done) => done() }));
      return result;
    };
    const [da, da2, db] = [await digest(a), await digest(a), await digest(b)];
    expect(da2).toEqual(da);
    expect(db).toEqual(da);
  });

  it('clamps mtimes to SOURCE_DATE_EPOCH', async () => {
    const src = fresh('sde');
    writeFileSync(join(src, 'old'), 'o');
    writeFileSync(join(src, 'new'), 'n');
    mkdirSync(join(src, 'dir'));
    utimesSync(join(src, 'old'), 1_000_000, 1_000_000);
    utimesSync(join(src, 'new'), 2_000_000_000, 2_000_000_000);
    utimesSync(join(src, 'dir'), 2_000_000_000, 2_000_000_000);
    const epoch = 1_500_000_000;
    const list = await headers(await toBuffer(writeLayerTar(src, { sourceDateEpoch: epoch })));
    const times = Object.fromEntries(list.map((h) => [h.name, h.mtime.getTime() / 1000]));
    expect(times).toEqual({ 'dir/': epoch, new: epoch, old: 1_000_000 });
  });

  it('refuses names that read as whiteouts and skips sockets with a warning', async () => {
    const src = fresh('wh-name');
    writeFileSync(join(src, '.wh.sneaky'), '');
    await expect(toBuffer(writeLayerTar(src))).rejects.toBeInstanceOf(LayerSourceError);

    const sock = fresh('sock');
    writeFileSync(join(sock, 'file'), 'f');
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(join(sock, 'ctl.sock'), resolve));
    try {
      const warnings: string[] = [];
      const list = await headers(await toBuffer(writeLayerTar(sock, { onWarning: (w) => warnings.push(w.code) })));
      expect(list.map((h) => h.name)).toEqual(['file']);
      expect(warnings).toEqual(['socket-skipped']);
    } finally {
      server.close();
    }
  });

  it('follows the xattrs policy and never writes overlay xattrs', async () => {
    const src = fresh('xattr-policy');
    writeFileSync(join(src, 'f'), 'f');
    setAttributeSync(join(src, 'f'), 'user.keep', 'k');
    setAttributeSync(join(src, 'f'), 'user.drop', 'd');
    setAttributeSync(join(src, 'f'), 'user.overlay.origin', '');
    const names = async (opts: Parameters<typeof writeLayerTar>[1]) =>
      headerXattrs((await headers(await toBuffer(writeLayerTar(src, opts))))[0]!).map(([n]) => n);
    expect(await names({})).toEqual(['user.drop', 'user.keep']);
    expect(await names({ xattrs: false })).toEqual([]);
    expect(await names({ xattrs: (n) => n !== 'user.drop' })).toEqual(['user.keep']);
  });

  it('stops with the error when a file shrinks while it is read', async () => {
    const src = fresh('shrink');
    const path = join(src, 'big');
    writeFileSync(path, Buffer.alloc(4 * 1024 * 1024, 1));
    const chunks = writeLayerTar(src)[Symbol.asyncIterator]();
    // Let the walk take the size and start on the content, then cut the file short.
    expect((await chunks.next()).done).toBe(false);
    writeFileSync(path, 'short');
    const drain = async () => {
      while (!(await chunks.next()).done);
    };
    await expect(drain()).rejects.toBeInstanceOf(LayerSourceError);
  });
});

describe('stopping early', () => {
  it('stops the walk and closes files when the reader goes away or the signal fires', async () => {
    const src = fresh('early');
    for (let i = 0; i < 4; i++) writeFileSync(join(src, `big${i}`), Buffer.alloc(3 * 1024 * 1024, i));
    // Descriptors of files under the tree that are still open.
    const openFds = () =>
      readdirSync('/proc/self/fd').filter((fd) => {
        try {
          return readlinkSync(`/proc/self/fd/${fd}`).startsWith(src);
        } catch {
          return false;
        }
      });

    const stream = writeLayerTar(src);
    const it = stream[Symbol.asyncIterator]();
    expect((await it.next()).done).toBe(false);
    stream.destroy();
    await new Promise((resolve) => setTimeout(resolve, 50));

    const controller = new AbortController();
    const aborted = writeLayerTar(src, { signal: controller.signal });
    const chunks = aborted[Symbol.asyncIterator]();
    expect((await chunks.next()).done).toBe(false);
    controller.abort(new Error('build cancelled'));
    const drain = async () => {
      while (!(await chunks.next()).done);
    };
    await expect(drain()).rejects.toThrow('build cancelled');
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(openFds()).toEqual([]);

    const dst = fresh('early-dst');
    const stop = new AbortController();
    stop.abort(new Error('not wanted'));
    await expect(extractLayer(writeLayerTar(src), dst, { signal: stop.signal })).rejects.toThrow('not wanted');
  });
});

describe('writeTarEntries', () => {
  it('tars an explicit list in tar order with overrides and synthesized entries', async () => {
    const src = fresh('entries-src');
    writeFileSync(join(src, 'a.txt'), 'A');
    writeFileSync(join(src, 'b.txt'), 'B');
    linkSync(join(src, 'b.txt'), join(src, 'b2.txt'));
    utimesSync(join(src, 'a.txt'), 1_650_000_000, 1_650_000_000);
    const specs: TarEntrySpec[] = [
      { path: '/app/z.txt', source: join(src, 'a.txt'), uid: 1000, gid: 1000, mode: 0o600 },
      { path: '/app/', type: 'directory', uid: 1000, gid: 1000 },
      { path: 'app/b.txt', source: join(src, 'b.txt') },
      { path: 'app/b-again.txt', source: join(src, 'b2.txt') },
      { path: 'app/gen/hello', type: 'file', content: 'hi\n', mode: 0o755 },
      { path: 'app/link', type: 'symlink', linkname: 'z.txt' },
      { path: 'old/file', type: 'whiteout' },
      { path: 'cache', type: 'opaque' },
    ];
    const tar = await toBuffer(writeTarEntries(specs, { sourceDateEpoch: 1_600_000_000 }));
    const list = await headers(tar);
    expect(list.map((h) => [h.name, h.type])).toEqual([
      ['app/', 'directory'],
      ['app/b-again.txt', 'file'],
      ['app/b.txt', 'link'],
      ['app/gen/hello', 'file'],
      ['app/link', 'symlink'],
      ['app/z.txt', 'file'],
      ['cache/.wh..wh..opq', 'file'],
      ['old/.wh.file', 'file'],
    ]);
    const z = list.find((h) => h.name === 'app/z.txt')!;
    expect(z).toMatchObject({ uid: 1000, gid: 1000, mode: 0o600, size: 1 });
    expect(z.mtime.getTime() / 1000).toBe(1_600_000_000);
    expect(list.find((h) => h.name === 'app/b.txt')!.linkname).toBe('app/b-again.txt');
    expect(list.find((h) => h.name === 'app/gen/hello')).toMatchObject({ mode: 0o755, size: 3 });

    const dst = fresh('entries-dst');
    await extractLayer(Readable.from([tar]), dst, { ownership: isRoot ? 'keep' : 'ignore' });
    expect(readFileSync(join(dst, 'app/z.txt'), 'utf8')).toBe('A');
    expect(readFileSync(join(dst, 'app/gen/hello'), 'utf8')).toBe('hi\n');
    expect(readlinkSync(join(dst, 'app/link'))).toBe('z.txt');
  });

  it('refuses duplicates and paths leaving the layer', async () => {
    await expect(toBuffer(writeTarEntries([{ path: 'a', content: 'x' }, { path: '/a', content: 'y' }]))).rejects.toBeInstanceOf(LayerSourceError);
    await expect(toBuffer(writeTarEntries([{ path: '../a', content: 'x' }]))).rejects.toBeInstanceOf(LayerSourceError);
  });
});
