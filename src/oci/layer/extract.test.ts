import { spawnSync } from 'node:child_process';
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pack as tarPack } from 'tar-stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LayerFormatError, UnsafeLayerEntryError } from './errors.js';
import { extractLayer, type ExtractOptions } from './extract.js';

const isRoot = process.getuid?.() === 0;

interface Entry {
  name: string;
  type?: 'file' | 'directory' | 'symlink' | 'link' | 'fifo' | 'character-device';
  content?: string;
  linkname?: string;
  mode?: number;
  uid?: number;
  gid?: number;
  devmajor?: number;
  devminor?: number;
}

/** A tar built entry by entry with tar-stream, exactly as given (no sorting, no checks). */
async function makeTar(entries: Entry[]): Promise<Buffer> {
  const p = tarPack();
  // Read while writing: the pack holds back entry callbacks once its buffer is full.
  const chunks: Buffer[] = [];
  p.on('data', (c: unknown) => chunks.push(c as Buffer));
  const ended = new Promise<void>((resolve) => p.on('end', () => resolve()));
  for (const e of entries) {
    const type = e.type ?? 'file';
    const header = {
      name: e.name,
      type,
      mode: e.mode ?? (type === 'directory' ? 0o755 : 0o644),
      uid: e.uid ?? 0,
      gid: e.gid ?? 0,
      mtime: new Date(1_600_000_000_000),
      ...(e.linkname !== undefined ? { linkname: e.linkname } : {}),
      devmajor: e.devmajor ?? 0,
      devminor: e.devminor ?? 0,
    };
    await new Promise<void>((resolve, reject) => {
      const cb = (err?: Error | null) => (err ? reject(err) : resolve());
      if (type === 'file') p.entry(header, e.content ?? '', cb);
      else p.entry(header, cb);
    });
  }
  p.finalize();
  await ended;
  return Buffer.concat(chunks);
}

let work: string;
beforeAll(() => {
  work = mkdtempSync(join(tmpdir(), 'kiln-layer-ex-'));
});
afterAll(() => {
  rmSync(work, { recursive: true, force: true });
});

let n = 0;
/** A target inside a fresh outer dir, so anything written beside the target is visible. */
function target(): { outer: string; dir: string } {
  const outer = join(work, `case-${n++}`);
  const dir = join(outer, 'target');
  mkdirSync(dir, { recursive: true });
  return { outer, dir };
}

async function apply(entries: Entry[], dir: string, options: ExtractOptions = {}) {
  return extractLayer(Readable.from([await makeTar(entries)]), dir, options);
}

function tree(root: string, rel = ''): string[] {
  const out: string[] = [];
  for (const name of readdirSync(join(root, rel)).sort()) {
    const p = rel ? `${rel}/${name}` : name;
    const st = lstatSync(join(root, p));
    out.push(st.isDirectory() ? `${p}/` : p);
    if (st.isDirectory()) out.push(...tree(root, p));
  }
  return out;
}

describe('extractLayer refuses hostile entries', () => {
  const outside = join(tmpdir(), `kiln-escape-${process.pid}`);
  afterAll(() => rmSync(outside, { recursive: true, force: true }));

  const cases: Array<{ title: string; entries: Entry[]; bad: string }> = [
    { title: '".." in the name', entries: [{ name: '../escape', content: 'x' }], bad: '../escape' },
    { title: '".." in the middle', entries: [{ name: 'a/../../escape', content: 'x' }], bad: 'a/../../escape' },
    { title: 'an absolute name', entries: [{ name: `${outside}/abs`, content: 'x' }], bad: `${outside}/abs` },
    {
      title: 'a parent that is a symlink to an absolute path',
      entries: [
        { name: 'evil', type: 'symlink', linkname: tmpdir() },
        { name: `evil/kiln-escape-${process.pid}-x`, content: 'x' },
      ],
      bad: `evil/kiln-escape-${process.pid}-x`,
    },
    {
      title: 'a parent that is a relative symlink climbing out',
      entries: [
        { name: 'up', type: 'symlink', linkname: '../..' },
        { name: 'up/escape', content: 'x' },
      ],
      bad: 'up/escape',
    },
    {
      title: 'a chain of symlinks that ends outside',
      entries: [
        { name: 'a', type: 'directory' },
        { name: 'a/b', type: 'symlink', linkname: '../c' },
        { name: 'c', type: 'symlink', linkname: '../../x' },
        { name: 'a/b/file', content: 'x' },
      ],
      bad: 'a/b/file',
    },
    { title: 'a hardlink to ../../etc/passwd', entries: [{ name: 'passwd', type: 'link', linkname: '../../etc/passwd' }], bad: 'passwd' },
    { title: 'a hardlink to an absolute path', entries: [{ name: 'shadow', type: 'link', linkname: '/etc/shadow' }], bad: 'shadow' },
    {
      title: 'a hardlink through a symlinked parent',
      entries: [
        { name: 'etc', type: 'symlink', linkname: '/etc' },
        { name: 'pw', type: 'link', linkname: 'etc/passwd' },
      ],
      bad: 'pw',
    },
    { title: 'a whiteout of ".."', entries: [{ name: 'a/.wh...', content: '' }], bad: 'a/.wh...' },
  ];

  for (const c of cases) {
    it(`refuses ${c.title}`, async () => {
      const { outer, dir } = target();
      const before = tree(outer);
      const err = await apply(c.entries, dir).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(UnsafeLayerEntryError);
      expect((err as UnsafeLayerEntryError).entry).toBe(c.bad);
      expect((err as Error).message).toContain(c.bad);
      // Nothing beside the target, nothing in the places the entries aimed at.
      expect(tree(outer).filter((p) => !p.startsWith('target/'))).toEqual(before.filter((p) => !p.startsWith('target/')));
      expect(existsSync(join(tmpdir(), `kiln-escape-${process.pid}-x`))).toBe(false);
      expect(existsSync(outside)).toBe(false);
      expect(existsSync(join(work, 'escape'))).toBe(false);
      expect(existsSync(join(work, 'x'))).toBe(false);
      // The entry itself was not written inside either.
      expect(existsSync(join(dir, c.bad))).toBe(false);
    });
  }

  it('resolves symlinks that stay inside the target', async () => {
    const { dir } = target();
    await apply(
      [
        { name: 'usr/lib/', type: 'directory' },
        { name: 'lib', type: 'symlink', linkname: 'usr/lib' },
        { name: 'lib/libc.so', content: 'libc' },
        { name: 'usr/lib/x', type: 'symlink', linkname: '../../usr/./lib' },
        { name: 'usr/lib/x/y', content: 'y' },
      ],
      dir,
    );
    expect(readFileSync(join(dir, 'usr/lib/libc.so'), 'utf8')).toBe('libc');
    expect(readFileSync(join(dir, 'usr/lib/y'), 'utf8')).toBe('y');
    expect(readlinkSync(join(dir, 'lib'))).toBe('usr/lib');
  });

  it('resolves absolute symlinks inside the target when asked to', async () => {
    const { dir } = target();
    await apply(
      [
        { name: 'run/', type: 'directory' },
        { name: 'var/run', type: 'symlink', linkname: '/run' },
        { name: 'var/run/app.pid', content: '1' },
      ],
      dir,
      { followAbsoluteSymlinks: true },
    );
    expect(readFileSync(join(dir, 'run/app.pid'), 'utf8')).toBe('1');
  });

  it('never writes through a symlink in the last component', async () => {
    const { outer, dir } = target();
    writeFileSync(join(outer, 'victim'), 'safe');
    symlinkSync('../victim', join(dir, 'f'));
    await apply([{ name: 'f', content: 'overwritten' }], dir);
    expect(readFileSync(join(outer, 'victim'), 'utf8')).toBe('safe');
    expect(lstatSync(join(dir, 'f')).isFile()).toBe(true);
    expect(readFileSync(join(dir, 'f'), 'utf8')).toBe('overwritten');
  });
});

describe('extractLayer applies entries', () => {
  it('replaces what is in the way and merges directories', async () => {
    const { dir } = target();
    await apply(
      [
        { name: 'd/', type: 'directory' },
        { name: 'd/keep', content: 'k' },
        { name: 'was-dir/', type: 'directory' },
        { name: 'was-dir/inner', content: 'i' },
        { name: 'was-file', content: 'f' },
        { name: 'was-link', type: 'symlink', linkname: 'd' },
      ],
      dir,
    );
    await apply(
      [
        { name: 'd/', type: 'directory', mode: 0o700 },
        { name: 'd/new', content: 'n' },
        { name: 'was-dir', content: 'now a file' },
        { name: 'was-file/', type: 'directory' },
        { name: 'was-link/', type: 'directory' },
        { name: 'dir-then-file/', type: 'directory', mode: 0o700 },
        { name: 'dir-then-file', content: 'the last entry wins', mode: 0o640 },
      ],
      dir,
    );
    expect(tree(dir)).toEqual(['d/', 'd/keep', 'd/new', 'dir-then-file', 'was-dir', 'was-file/', 'was-link/']);
    expect(lstatSync(join(dir, 'd')).mode & 0o777).toBe(0o700);
    expect(lstatSync(join(dir, 'dir-then-file')).mode & 0o777).toBe(0o640);
  });

  it('applies whiteouts and opaque directories (apply mode)', async () => {
    const { dir } = target();
    await apply(
      [
        { name: 'a/', type: 'directory' },
        { name: 'a/1', content: '1' },
        { name: 'a/2', content: '2' },
        { name: 'b/', type: 'directory' },
        { name: 'b/old/', type: 'directory' },
        { name: 'b/old/deep', content: 'd' },
        { name: 'b/keep-name', content: 'lower' },
        { name: 'c', content: 'c' },
      ],
      dir,
    );
    await apply(
      [
        { name: 'a/.wh.1', content: '' },
        { name: 'b/', type: 'directory' },
        { name: 'b/-early', content: 'sorted before the marker' },
        { name: 'b/.wh..wh..opq', content: '' },
        { name: 'b/keep-name', content: 'upper' },
        { name: '.wh.c', content: '' },
        { name: '.wh.never-existed', content: '' },
      ],
      dir,
    );
    expect(tree(dir)).toEqual(['a/', 'a/2', 'b/', 'b/-early', 'b/keep-name']);
    expect(readFileSync(join(dir, 'b/keep-name'), 'utf8')).toBe('upper');
  });

  it('keeps or ignores ownership as asked', async () => {
    const entries: Entry[] = [{ name: 'owned', content: 'o', uid: 4242, gid: 4343, mode: 0o4750 }];
    const ignored = target().dir;
    await apply(entries, ignored, { ownership: 'ignore' });
    const st = lstatSync(join(ignored, 'owned'));
    expect([st.uid, st.gid]).toEqual([process.getuid!(), process.getgid!()]);
    expect(st.mode & 0o7777).toBe(0o4750);
    if (isRoot) {
      const kept = target().dir;
      await apply(entries, kept);
      const k = lstatSync(join(kept, 'owned'));
      expect([k.uid, k.gid, k.mode & 0o7777]).toEqual([4242, 4343, 0o4750]);
    }
  });

  it('creates fifos and device nodes, and warns for nodes it may not create', async () => {
    const { dir } = target();
    const warnings: string[] = [];
    await apply(
      [
        { name: 'dev/', type: 'directory' },
        { name: 'dev/fifo', type: 'fifo', mode: 0o600 },
        ...(isRoot ? [{ name: 'dev/null', type: 'character-device' as const, devmajor: 1, devminor: 3, mode: 0o666 }] : []),
      ],
      dir,
      { onWarning: (w) => warnings.push(w.code) },
    );
    expect(lstatSync(join(dir, 'dev/fifo')).isFIFO()).toBe(true);
    expect(lstatSync(join(dir, 'dev/fifo')).mode & 0o777).toBe(0o600);
    expect(warnings).toEqual([]);
    if (isRoot) {
      const st = lstatSync(join(dir, 'dev/null'));
      expect(st.isCharacterDevice() && st.rdev === lstatSync('/dev/null').rdev && (st.mode & 0o777) === 0o666).toBe(true);
    }
  });

  it('creates thousands of whiteout nodes in batches, not one process each', async () => {
    const { dir } = target();
    // What one spawned mknod costs on this machine right now, to compare against.
    const probe = join(work, 'probe');
    mkdirSync(probe);
    let started = performance.now();
    for (let i = 0; i < 20; i++) spawnSync('mknod', ['-m', '0', join(probe, `w${i}`), 'c', '0', '0']);
    const perSpawn = (performance.now() - started) / 20;

    const count = 3000;
    const entries: Entry[] = [{ name: 'many/', type: 'directory' }];
    for (let i = 0; i < count; i++) entries.push({ name: `many/.wh.f${String(i).padStart(4, '0')}`, content: '' });
    const tar = await makeTar(entries);
    started = performance.now();
    await extractLayer(Readable.from([tar]), dir, { whiteouts: 'overlay' });
    const elapsed = performance.now() - started;
    const names = readdirSync(join(dir, 'many'));
    expect(names.length).toBe(count);
    for (const name of names.slice(0, 50)) {
      const st = lstatSync(join(dir, 'many', name));
      expect(st.isCharacterDevice() && st.rdev === 0 && (st.mode & 0o7777) === 0).toBe(true);
    }
    expect(elapsed).toBeLessThan((count * perSpawn) / 3);
  }, 120_000);

  it('reports corrupt and truncated tars as LayerFormatError', async () => {
    const { dir } = target();
    const garbage = Buffer.alloc(1024, 0x41);
    await expect(extractLayer(Readable.from([garbage]), dir)).rejects.toBeInstanceOf(LayerFormatError);
    const good = await makeTar([{ name: 'big', content: 'x'.repeat(5000) }]);
    await expect(extractLayer(Readable.from([good.subarray(0, 1536)]), target().dir)).rejects.toBeInstanceOf(LayerFormatError);
  });

  it('reports a missing hardlink target and a file used as a directory', async () => {
    await expect(apply([{ name: 'l', type: 'link', linkname: 'nope' }], target().dir)).rejects.toBeInstanceOf(LayerFormatError);
    await expect(apply([{ name: 'f', content: 'f' }, { name: 'f/x', content: 'x' }], target().dir)).rejects.toBeInstanceOf(LayerFormatError);
  });

  it('behaves as documented inside a user namespace with a single id mapping', async () => {
    if (spawnSync('unshare', ['--user', '--map-root-user', 'true']).status !== 0) {
      throw new Error('unshare --user --map-root-user does not work here; the rootless extraction test needs it');
    }
    const { dir } = target();
    const tarFile = join(work, 'rootless.tar');
    writeFileSync(
      tarFile,
      await makeTar([
        { name: 'dev/', type: 'directory' },
        { name: 'dev/null', type: 'character-device', devmajor: 1, devminor: 3 },
        { name: 'dev/.wh.gone', content: '' },
        { name: 'home/', type: 'directory' },
        { name: 'home/user-file', content: 'u', uid: 1000, gid: 1000 },
      ]),
    );
    const script = join(work, 'rootless.mts');
    writeFileSync(
      script,
      `import { createReadStream, mkdirSync } from 'node:fs';
import { extractLayer } from ${JSON.stringify(join(import.meta.dirname, 'extract.ts'))};
const out = {};
const warnings = [];
try { await extractLayer(createReadStream(${JSON.stringify(tarFile)}), ${JSON.stringify(dir)}, { whiteouts: 'overlay' }); out.keep = 'ok'; }
catch (e) { out.keep = [e.constructor.name, e.entry, e.hint ?? '']; }
mkdirSync(${JSON.stringify(dir)} + '2');
await extractLayer(createReadStream(${JSON.stringify(tarFile)}), ${JSON.stringify(dir)} + '2', { whiteouts: 'overlay', ownership: 'ignore', onWarning: (w) => warnings.push([w.code, w.entry]) });
out.warnings = warnings;
console.log(JSON.stringify(out));
`,
    );
    const r = spawnSync('unshare', ['--user', '--map-root-user', process.execPath, '--import', 'tsx', script], {
      cwd: join(import.meta.dirname, '../../..'),
      encoding: 'utf8',
    });
    expect(r.stderr).toBe('');
    const out = JSON.parse(r.stdout) as { keep: unknown; warnings: unknown };
    expect(out.keep).toEqual(['LayerExtractError', 'home/user-file', expect.stringContaining('ownership "ignore"')]);
    expect(out.warnings).toEqual([['device-skipped', 'dev/null']]);
    const wh = lstatSync(join(`${dir}2`, 'dev/gone'));
    expect(wh.isCharacterDevice() && wh.rdev === 0).toBe(true);
    expect(existsSync(join(`${dir}2`, 'dev/null'))).toBe(false);
    expect(readFileSync(join(`${dir}2`, 'home/user-file'), 'utf8')).toBe('u');
  });
});
