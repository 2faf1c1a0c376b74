import { createHash } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import { join } from 'node:path';
import { setAttributeSync } from '@napi-rs/xattr';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tempDir } from '../../../test/helpers/copy-fixtures.js';
import { writeTarEntries, type TarEntrySpec, type TarWriteOptions } from '../../oci/layer/index.js';
import { copyLayerTar } from './tar-writer.js';

let base: string;
let xattrs = true;

async function collect(chunks: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of chunks) parts.push(Buffer.from(c));
  return Buffer.concat(parts);
}

/** Both writers' bytes for the same entries. */
async function both(entries: TarEntrySpec[], options: TarWriteOptions = {}): Promise<{ general: Buffer; fast: Buffer }> {
  const general = await collect(writeTarEntries(entries, options));
  const fast = await collect(copyLayerTar(entries, options));
  return { general, fast };
}

function digest(b: Buffer): string {
  return createHash('sha256').update(b).digest('hex');
}

beforeAll(async () => {
  base = await tempDir('kiln-tar-writer-');
  const src = join(base, 'src');
  await fsp.mkdir(join(src, 'dir/sub'), { recursive: true });
  for (const size of [0, 1, 511, 512, 513, 300 * 1024, 2 * 1024 * 1024 + 17]) {
    const data = Buffer.alloc(size);
    for (let i = 0; i < size; i++) data[i] = (i * 31 + size) & 0xff;
    await fsp.writeFile(join(src, `f${size}`), data);
  }
  await fsp.writeFile(join(src, 'dir/sub/x.txt'), 'x\n');
  await fsp.chmod(join(src, 'f1'), 0o4755);
  await fsp.symlink('dir/sub/x.txt', join(src, 'link'));
  await fsp.symlink('a'.repeat(150), join(src, 'longlink'));
  await fsp.link(join(src, 'f512'), join(src, 'hard'));
  await fsp.link(join(src, 'f513'), join(src, 'hard2'));
  await fsp.writeFile(join(src, 'ünïcødé-名前'), 'unicode\n');
  const deep = join(src, 'd'.repeat(60), 'e'.repeat(60), 'f'.repeat(60));
  await fsp.mkdir(deep, { recursive: true });
  await fsp.writeFile(join(deep, 'g'.repeat(120)), 'long\n');
  await fsp.writeFile(join(src, 'xattr'), 'has xattrs\n');
  try {
    setAttributeSync(join(src, 'xattr'), 'user.binary', Buffer.from([0, 0xff, 0xfe, 0x80, 1]));
    setAttributeSync(join(src, 'xattr'), 'user.text', Buffer.from('value'));
  } catch {
    xattrs = false; // a file system without user xattrs: the rest still compares
  }
  const { execFileSync } = await import('node:child_process');
  execFileSync('mkfifo', [join(src, 'fifo')]);
});

afterAll(async () => {
  await fsp.rm(base, { recursive: true, force: true });
});

async function sourceEntries(): Promise<TarEntrySpec[]> {
  const src = join(base, 'src');
  const out: TarEntrySpec[] = [{ path: '/app', type: 'directory', mode: 0o755, mtime: 1_700_000_000 }];
  const walk = async (dir: string, rel: string): Promise<void> => {
    for (const name of await fsp.readdir(dir)) {
      const abs = join(dir, name);
      out.push({ path: `/app${rel}/${name}`, source: abs, uid: 0, gid: 0 });
      if ((await fsp.lstat(abs)).isDirectory()) await walk(abs, `${rel}/${name}`);
    }
  };
  await walk(src, '');
  return out;
}

describe('the COPY layer writer', () => {
  it('writes the bytes the general tar writer writes for host sources', async () => {
    const entries = await sourceEntries();
    const { general, fast } = await both(entries);
    expect(fast.length).toBe(general.length);
    expect(digest(fast)).toBe(digest(general));
    if (xattrs) expect(general.includes(Buffer.from('SCHILY.xattr.user.binary='))).toBe(true);
  });

  it('agrees with owners, modes, times and xattrs given, clamped to SOURCE_DATE_EPOCH', async () => {
    const entries = (await sourceEntries()).map((e, i) => ({
      ...e,
      ...(i % 2 ? { uid: 0o7777777 + i, gid: 1000 } : {}),
      ...(i % 3 === 0 ? { mode: 0o600 } : {}),
      ...(i % 5 === 0 ? { mtime: i % 10 === 0 ? -5 : 2 ** 34 } : {}),
      ...(i % 7 === 0 ? { xattrs: { 'user.given': 'v', 'trusted.overlay.opaque': 'y' } } : {}),
    }));
    for (const epoch of [undefined, 1_600_000_000]) {
      const options = epoch === undefined ? {} : { sourceDateEpoch: epoch };
      const { general, fast } = await both(entries, options);
      expect(digest(fast)).toBe(digest(general));
    }
  });

  it('agrees on synthesized entries: directories, files, symlinks, whiteouts', async () => {
    const entries: TarEntrySpec[] = [
      { path: '/etc', type: 'directory', mode: 0o1777, uid: 5, gid: 6, mtime: 12 },
      { path: '/etc/hello.conf', content: 'greeting=hello\n', mode: 0o640 },
      { path: '/etc/empty', type: 'file' },
      { path: '/etc/bytes', content: Buffer.alloc(1000, 7) },
      { path: '/etc/l', type: 'symlink', linkname: '/etc/hello.conf' },
      { path: '/gone', type: 'whiteout' },
      { path: '/etc', type: 'opaque' },
      { path: `/${'n'.repeat(101)}`, content: 'x' },
    ];
    const { general, fast } = await both(entries, { sourceDateEpoch: 100 });
    expect(digest(fast)).toBe(digest(general));
  });

  it('fails like the general writer on a missing source and on a name listed twice', async () => {
    const missing = [{ path: '/a', source: join(base, 'nope') }];
    await expect(collect(copyLayerTar(missing))).rejects.toThrow(/nope: cannot stat/);
    const twice = [
      { path: '/a', content: 'x' },
      { path: 'a', content: 'y' },
    ];
    await expect(collect(copyLayerTar(twice))).rejects.toThrow(/listed twice/);
  });
});

describe('the content digest of a copy', () => {
  const contentOf = async (entries: TarEntrySpec[]): Promise<{ content: string; tar: string }> => {
    let content = '';
    const tar = digest(await collect(copyLayerTar(entries, { onContentDigest: (d) => (content = d) })));
    return { content, tar };
  };

  it('leaves out times, and only times', async () => {
    const file = join(base, 'content.txt');
    await fsp.writeFile(file, 'same bytes\n');
    await fsp.utimes(file, 1_000_000, 1_000_000);
    const early = await contentOf([{ path: '/app/content.txt', source: file }, { path: '/app/made.txt', content: 'x', mtime: 5 }]);
    await fsp.utimes(file, 2_000_000, 2_000_000);
    const late = await contentOf([{ path: '/app/content.txt', source: file }, { path: '/app/made.txt', content: 'x', mtime: 9 }]);
    expect(late.tar).not.toBe(early.tar);
    expect(late.content).toBe(early.content);
    expect(early.content).toMatch(/^sha256:[0-9a-f]{64}$/);

    const differ = async (entries: TarEntrySpec[]) => expect((await contentOf(entries)).content).not.toBe(early.content);
    await differ([{ path: '/app/content.txt', source: file, mode: 0o600 }, { path: '/app/made.txt', content: 'x', mtime: 5 }]);
    await differ([{ path: '/app/content.txt', source: file, uid: 1000 }, { path: '/app/made.txt', content: 'x', mtime: 5 }]);
    await differ([{ path: '/app/other.txt', source: file }, { path: '/app/made.txt', content: 'x', mtime: 5 }]);
    await differ([{ path: '/app/content.txt', source: file }, { path: '/app/made.txt', content: 'y', mtime: 5 }]);
    await fsp.writeFile(file, 'other bytes\n');
    await differ([{ path: '/app/content.txt', source: file }, { path: '/app/made.txt', content: 'x', mtime: 5 }]);
  });
});
