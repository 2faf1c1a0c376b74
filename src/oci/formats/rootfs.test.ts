/**
 * Root filesystems in and out: `importRootfs` turns a tar or a directory into a one-layer image
 * (refusing entries that would escape the root), `exportRootfs` flattens layers, whiteouts and
 * opaque directories applied, into a directory or a single tar.
 */
import { execFile } from 'node:child_process';
import { createReadStream, createWriteStream, promises as fsp } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable, Writable } from 'node:stream';
import { promisify } from 'node:util';
import { gzipSync } from 'node:zlib';
import { extract as tarExtract, pack as tarPack } from 'tar-stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { KilnError } from '../../errors.js';
import { sha256 } from '../digest.js';
import type { Image } from '../image.js';
import { BlobVerificationError, memoryImage } from '../layout/index.js';
import { UnsafeLayerEntryError, extractLayer } from '../layer/index.js';
import { MediaType } from '../mediatypes.js';
import { hostPlatform } from '../platform.js';
import { RootfsSourceError, exportRootfs, importRootfs } from './index.js';

const run = promisify(execFile);

type Entry = { name: string; content?: string; type?: 'file' | 'directory' | 'symlink' | 'link'; mode?: number; uid?: number; gid?: number; linkname?: string };

async function makeTar(entries: Entry[]): Promise<Buffer> {
  const p = tarPack();
  for (const e of entries) {
    const type = e.type ?? 'file';
    const header = { name: e.name, type, mtime: new Date(1_500_000_000_000), mode: e.mode ?? (type === 'directory' ? 0o755 : 0o644), uid: e.uid ?? 0, gid: e.gid ?? 0, linkname: e.linkname };
    if (type === 'file') p.entry(header, e.content ?? '');
    else p.entry(header);
  }
  p.finalize();
  return collect(p as unknown as Readable);
}

async function collect(stream: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of stream) parts.push(c as Buffer);
  return Buffer.concat(parts);
}

/** A tree as `path → description` (type, mode, owner, content or link target), for comparisons. */
async function describeTree(root: string, withOwners = process.geteuid?.() === 0): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  async function walk(rel: string): Promise<void> {
    for (const name of (await fsp.readdir(join(root, rel))).sort()) {
      const path = rel ? `${rel}/${name}` : name;
      const st = await fsp.lstat(join(root, path));
      const owner = withOwners ? ` ${st.uid}:${st.gid}` : '';
      if (st.isDirectory()) {
        out[path] = `dir ${(st.mode & 0o7777).toString(8)}${owner}`;
        await walk(path);
      } else if (st.isSymbolicLink()) {
        out[path] = `symlink -> ${await fsp.readlink(join(root, path))}`;
      } else {
        out[path] = `file ${(st.mode & 0o7777).toString(8)}${owner} ${await fsp.readFile(join(root, path), 'utf8')}`;
      }
    }
  }
  await walk('');
  return out;
}

async function failure(p: Promise<unknown>): Promise<KilnError> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(KilnError);
    expect((err as KilnError).describe()).not.toMatch(/\n/);
    return err as KilnError;
  }
  throw new Error('expected a failure');
}

let dir: string;
beforeEach(async () => {
  dir = await fsp.mkdtemp(join(tmpdir(), 'kiln-rootfs-'));
});
afterEach(async () => {
  await fsp.rm(dir, { recursive: true, force: true });
});

const TREE: Entry[] = [
  { name: 'bin/', type: 'directory' },
  { name: 'bin/hello', content: '#!/bin/sh\necho hello\n', mode: 0o755, uid: 1000, gid: 1000 },
  { name: 'bin/hi', type: 'symlink', linkname: 'hello' },
  { name: 'etc/', type: 'directory', mode: 0o750 },
  { name: 'etc/hostname', content: 'kiln\n', mode: 0o600 },
  { name: 'etc/hostname.bak', type: 'link', linkname: 'etc/hostname' },
];

async function extractImage(image: Image, target: string): Promise<void> {
  await fsp.mkdir(target, { recursive: true });
  const ownership = process.geteuid?.() === 0 ? 'keep' : 'ignore';
  for (const layer of await image.layers()) await extractLayer(await layer.uncompressed(), target, { ownership });
}

describe('importRootfs', () => {
  it('makes a one-layer image for the host platform whose layer is the tar', async () => {
    const tar = await makeTar(TREE);
    const file = join(dir, 'rootfs.tar');
    await fsp.writeFile(file, tar);
    const created = new Date('2024-05-06T07:08:09Z');
    const image = await importRootfs(file, { created, history: 'imported for a test' });
    const config = await image.configFile();
    const host = hostPlatform();
    expect(config.os).toBe(host.os);
    expect(config.architecture).toBe(host.architecture);
    expect(config.created).toBe(created.toISOString());
    expect(config.rootfs.diff_ids).toEqual([sha256(tar)]);
    expect(config.history).toEqual([{ created: created.toISOString(), comment: 'imported for a test' }]);
    const [layer] = await image.layers();
    expect(await layer!.mediaType()).toBe(MediaType.ociLayer);
    expect(await collect(await layer!.compressed())).toEqual(tar);
    expect((await image.manifest()).layers).toEqual([{ mediaType: MediaType.ociLayer, digest: sha256(tar), size: tar.length }]);

    const out = join(dir, 'out');
    await extractImage(image, out);
    const reference = join(dir, 'reference');
    await fsp.mkdir(reference);
    await run('tar', ['-xf', file, '-C', reference, ...(process.geteuid?.() === 0 ? ['--same-owner'] : [])]);
    expect(await describeTree(out)).toEqual(await describeTree(reference));
    expect((await fsp.stat(join(out, 'etc/hostname'))).ino).toBe((await fsp.stat(join(out, 'etc/hostname.bak'))).ino);
    await image.close();
  });

  it('takes gzip and zstd tars, and streams, to the same layer', async () => {
    const tar = await makeTar(TREE);
    const gz = join(dir, 'rootfs.tar.gz');
    await fsp.writeFile(gz, gzipSync(tar));
    const fromGzip = await importRootfs(gz, { created: new Date(0), history: 'same' });
    expect((await fromGzip.configFile()).rootfs.diff_ids).toEqual([sha256(tar)]);
    expect(await collect(await (await fromGzip.layers())[0]!.uncompressed())).toEqual(tar);

    const zst = join(dir, 'rootfs.tar.zst');
    await fsp.writeFile(join(dir, 'plain.tar'), tar);
    await run('zstd', ['-q', '-o', zst, join(dir, 'plain.tar')]);
    const fromZstd = await importRootfs(zst, { created: new Date(0), history: 'same' });
    expect(await fromZstd.configName()).toBe(await fromGzip.configName());

    const fromStream = await importRootfs(Readable.from([gzipSync(tar)]), { created: new Date(0), tmpDir: dir, history: 'Imported from -' });
    expect((await fromStream.configFile()).rootfs.diff_ids).toEqual([sha256(tar)]);
    expect(await collect(await (await fromStream.layers())[0]!.compressed())).toEqual(tar);
    expect((await fsp.readdir(dir)).some((n) => n.startsWith('kiln-import-'))).toBe(true);
    await fromStream.close();
    expect((await fsp.readdir(dir)).some((n) => n.startsWith('kiln-import-'))).toBe(false);
  });

  it('imports a directory as a layer that extracts to the same tree', async () => {
    const src = join(dir, 'src');
    await fsp.mkdir(join(src, 'usr/share'), { recursive: true });
    await fsp.writeFile(join(src, 'usr/share/doc.txt'), 'docs\n');
    await fsp.writeFile(join(src, 'run.sh'), 'exit 0\n', { mode: 0o755 });
    await fsp.symlink('run.sh', join(src, 'start'));
    const image = await importRootfs(src, { platform: { os: 'linux', architecture: 'arm64' }, config: { Cmd: ['/run.sh'] } });
    const config = await image.configFile();
    expect(config.architecture).toBe('arm64');
    expect(config.config).toEqual({ Cmd: ['/run.sh'] });
    const out = join(dir, 'out');
    await extractImage(image, out);
    expect(await describeTree(out, false)).toEqual(await describeTree(src, false));
    // The tree is tarred again on each read: a change since the import is caught.
    await fsp.writeFile(join(src, 'run.sh'), 'exit 1\n');
    await expect(collect(await (await image.layers())[0]!.uncompressed())).rejects.toBeInstanceOf(BlobVerificationError);
  });

  it('refuses entries that would escape the root', async () => {
    for (const [label, entries] of [
      ['dot-dot', [{ name: 'etc/', type: 'directory' }, { name: 'etc/../../evil', content: 'x' }]],
      ['absolute', [{ name: '/etc/passwd', content: 'x' }]],
      ['hardlink out', [{ name: 'link', type: 'link', linkname: '../../etc/shadow' }]],
      ['under a symlink', [{ name: 'esc', type: 'symlink', linkname: '/etc' }, { name: 'esc/cron.d/job', content: 'x' }]],
    ] as Array<[string, Entry[]]>) {
      const file = join(dir, `${label}.tar`);
      await fsp.writeFile(file, await makeTar(entries));
      const err = await failure(importRootfs(file));
      expect(err, label).toBeInstanceOf(UnsafeLayerEntryError);
    }
  });

  it('refuses garbage, truncated and missing sources with one line', async () => {
    const garbage = join(dir, 'garbage');
    await fsp.writeFile(garbage, 'not a tar\n'.repeat(100));
    expect((await failure(importRootfs(garbage))).describe()).toMatch(/garbage: not a tar archive/);
    const tar = await makeTar(TREE);
    const cut = join(dir, 'cut.tar');
    await fsp.writeFile(cut, tar.subarray(0, 700));
    const err = await failure(importRootfs(cut));
    expect(err).toBeInstanceOf(RootfsSourceError);
    expect(err.describe()).toMatch(/truncated/);
    const gz = join(dir, 'cut.tar.gz');
    const zipped = gzipSync(tar);
    await fsp.writeFile(gz, zipped.subarray(0, zipped.length - 8));
    expect((await failure(importRootfs(gz))).describe()).toMatch(/cut\.tar\.gz: .*gzip/);
    expect((await failure(importRootfs(join(dir, 'missing.tar')))).describe()).toMatch(/missing\.tar: no such file/);
  });
});

describe('exportRootfs', () => {
  /** Three layers exercising whiteouts, opaque directories, replaced types and hard links. */
  async function layeredImage(): Promise<Image> {
    const l1 = await makeTar([
      { name: 'etc/', type: 'directory' },
      { name: 'etc/keep', content: 'keep\n' },
      { name: 'etc/gone', content: 'gone\n' },
      { name: 'var/', type: 'directory' },
      { name: 'var/cache/', type: 'directory' },
      { name: 'var/cache/a', content: 'a\n' },
      { name: 'var/cache/sub/', type: 'directory' },
      { name: 'var/cache/sub/b', content: 'b\n' },
      { name: 'data/', type: 'directory' },
      { name: 'data/x', content: 'x\n' },
      { name: 'old/', type: 'directory' },
      { name: 'old/file', content: 'old\n' },
      { name: 'lib/', type: 'directory' },
      { name: 'lib/orig', content: 'original content\n', mode: 0o640, uid: 7, gid: 8 },
      { name: 'lib/alias', type: 'link', linkname: 'lib/orig' },
    ]);
    const l2 = await makeTar([
      { name: 'etc/', type: 'directory', mode: 0o700 },
      { name: 'etc/.wh.gone' },
      { name: 'etc/new', content: 'new\n' },
      { name: 'var/cache/', type: 'directory' },
      { name: 'var/cache/.wh..wh..opq' },
      { name: 'var/cache/c', content: 'c\n' },
      { name: '.wh.data' },
      { name: 'old', content: 'a file where a directory was\n' },
    ]);
    const l3 = await makeTar([
      { name: 'etc/keep', content: 'kept, changed\n', mode: 0o600 },
      { name: 'lib/orig', content: 'replaced above\n' },
      { name: 'data/', type: 'directory' },
      { name: 'data/y', content: 'y\n' },
      { name: 'etc/new-link', type: 'link', linkname: 'etc/new' },
    ]);
    return memoryImage({
      layers: [
        { blob: gzipSync(l1), mediaType: MediaType.ociLayerGzip },
        { blob: l2 },
        { blob: gzipSync(l3), mediaType: MediaType.ociLayerGzip },
      ],
    });
  }

  const expected = (owners: boolean): Record<string, string> => {
    const o = (uid: number, gid: number) => (owners ? ` ${uid}:${gid}` : '');
    return {
      data: `dir 755${o(0, 0)}`,
      'data/y': `file 644${o(0, 0)} y\n`,
      etc: `dir 700${o(0, 0)}`,
      'etc/keep': `file 600${o(0, 0)} kept, changed\n`,
      'etc/new': `file 644${o(0, 0)} new\n`,
      'etc/new-link': `file 644${o(0, 0)} new\n`,
      lib: `dir 755${o(0, 0)}`,
      'lib/alias': `file 640${o(7, 8)} original content\n`,
      'lib/orig': `file 644${o(0, 0)} replaced above\n`,
      old: `file 644${o(0, 0)} a file where a directory was\n`,
      var: `dir 755${o(0, 0)}`,
      'var/cache': `dir 755${o(0, 0)}`,
      'var/cache/c': `file 644${o(0, 0)} c\n`,
    };
  };

  it('applies layers, whiteouts and opaque directories into a directory', async () => {
    const out = join(dir, 'rootfs');
    await exportRootfs(await layeredImage(), { dir: out });
    const root = process.geteuid?.() === 0;
    expect(await describeTree(out, root)).toEqual(expected(root));
  });

  it('flattens into one tar that extracts to the same tree', async () => {
    const file = join(dir, 'rootfs.tar');
    await exportRootfs(await layeredImage(), { tar: createWriteStream(file) });
    // No whiteouts survive, and every path is there once.
    const names: string[] = [];
    const ex = tarExtract();
    const reading = (async () => {
      for await (const e of ex) {
        names.push(e.header.name);
        e.resume();
      }
    })();
    createReadStream(file).pipe(ex);
    await reading;
    expect(names.filter((n) => n.includes('.wh.'))).toEqual([]);
    expect(new Set(names).size).toBe(names.length);

    const out = join(dir, 'extracted');
    await fsp.mkdir(out);
    const root = process.geteuid?.() === 0;
    await extractLayer(createReadStream(file), out, { ownership: root ? 'keep' : 'ignore' });
    expect(await describeTree(out, root)).toEqual(expected(root));
    const viaTar = join(dir, 'gnu-tar');
    await fsp.mkdir(viaTar);
    await run('tar', ['-xf', file, '-C', viaTar, ...(root ? ['--same-owner'] : [])]);
    expect(await describeTree(viaTar, root)).toEqual(expected(root));
  });

  it('writes to a stream it can leave open', async () => {
    const chunks: Buffer[] = [];
    const out = new Writable({
      write(chunk: Buffer, _enc, done) {
        chunks.push(chunk);
        done();
      },
    });
    await exportRootfs(await layeredImage(), { tar: out, end: false });
    expect(out.writableEnded).toBe(false);
    expect(Buffer.concat(chunks).length % 512).toBe(0);
    out.end();
  });
});
