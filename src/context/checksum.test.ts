import { execFileSync } from 'node:child_process';
import { chmod, lstat, mkdir, mkdtemp, rm, symlink, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setAttributeSync } from '@napi-rs/xattr';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { sha256 } from '../oci/digest.js';
import { EMPTY_DIGEST, entryHeader } from './checksum.js';
import { ContextPathNotFoundError, ContextPatternError } from './errors.js';
import { GoPattern, containsWildcards, splitWildcards } from './gomatch.js';
import { openContext, type BuildContext, type OpenContextOptions } from './index.js';

let root: string;
let ctxDir: string;
let cacheDir: string;
const opened: BuildContext[] = [];

beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), 'kiln-checksum-'));
  ctxDir = join(root, 'ctx');
  cacheDir = join(root, 'cache');
  await mkdir(ctxDir, { mode: 0o755 });
  await chmod(ctxDir, 0o755);
});
afterEach(async () => {
  await Promise.all(opened.splice(0).map((c) => c.close()));
  await rm(root, { recursive: true, force: true });
});

/**
 * Creates entries with fixed modes (files 0644, directories 0755): `dir/`, `name -> target` for a
 * symlink, `name=content` for a file (empty without `=`).
 */
async function tree(...entries: string[]): Promise<void> {
  for (const e of entries) {
    const [path, target] = e.split(' -> ') as [string, string | undefined];
    const abs = join(ctxDir, path);
    if (target !== undefined) {
      await symlink(target, abs);
    } else if (path.endsWith('/')) {
      await mkdir(abs, { recursive: true });
      await chmod(abs, 0o755);
    } else {
      const eq = path.indexOf('=');
      const file = join(ctxDir, eq < 0 ? path : path.slice(0, eq));
      await writeFile(file, eq < 0 ? '' : path.slice(eq + 1));
      await chmod(file, 0o644);
    }
  }
}

async function open(options: Partial<OpenContextOptions> = {}): Promise<BuildContext> {
  const c = await openContext(ctxDir, { cacheDir, ignoreFile: null, ...options });
  opened.push(c);
  return c;
}

/** Digests from BuildKit's own tests (cache/contenthash/checksum_test.go), for the same trees. */
const BK = {
  fileData0: 'sha256:cd8e75bca50f2d695f220d0cb0997d8ead387e4f926e8669a92d7f104cc9885b',
  fileData1: 'sha256:c2b5e234f5f38fc5864da7def04782f82501a40d46192e4207d5b3f0c3c4732b',
  fileData2: 'sha256:1c67653c3cf95b12a0014e2c4cd1d776b474b3218aee54155d6ae27b9b999c54',
  dirD0: 'sha256:d47454417d2c554067fbefe5f5719edc49f3cfe969c36b62e34a187a4da0cc9a',
  dirD0Modified: 'sha256:555ffa3028630d97ba37832b749eda85ab676fd64ffb629fbf0f4ec8c1e3bff1',
  dirD0FileByFile: 'sha256:6b612ad5c13159112ae26357ef7bd34df29916941ba40ec2ce38dfb70c6c60c3',
  foos: 'sha256:0b6731924f0a32a812bf8a729202e55e54ded331f9e4ff2397f681e43694e086',
  foos2: 'sha256:982153600b9653a1decb0f961e09e2bc1be335cfcaac9b39dbd1120b65fdf92c',
  symToTarget: 'sha256:a2ba571981f48ec34eb79c9a3ab091b6491e825c2f7e9914ea86e8e958be7fae',
  dirWithSym: 'sha256:9b761577efcb1239cf4be971914c5d7404914dd32ff436401af1764dc5446b83',
  wildcardDirWithSym: 'sha256:2797e710c6d1a89ff2d91c834b828b1dc500f2982430a58241df8e146f4c4bb4',
} as const;

describe('BuildKit compatibility', () => {
  it('hashes files, symlinks and directories exactly as BuildKit does', async () => {
    await tree('foo=data0', 'bar=data1', 'd0/', 'd0/abc=data0', 'd0/def -> abc', 'd0/ghi -> nosuchfile', 'e/', 'e/abc=data0', 'e/def -> abc');
    await tree('abc/', 'abc/aa/', 'abc/aa/foo=data2', 'sym -> target', 'g/', 'g/ghi -> target');
    const c = await open();
    expect(await c.checksum('foo')).toBe(BK.fileData0);
    expect(await c.checksum('bar')).toBe(BK.fileData1);
    expect(await c.checksum('d0/abc')).toBe(BK.fileData0);
    expect(await c.checksum('abc/aa/foo')).toBe(BK.fileData2);
    expect(await c.checksum('d0')).toBe(BK.dirD0);
    expect(await c.checksum('/d0/')).toBe(BK.dirD0);
    expect(await c.checksum('e')).toBe(BK.dirD0Modified);
    expect(await c.checksum('sym')).toBe(BK.symToTarget);
    expect(await c.checksum('g')).toBe(BK.dirWithSym);
    // A followed link hashes as its target; a broken one is not found.
    expect(await c.checksum('d0/def', { followLinks: true })).toBe(BK.fileData0);
    await expect(c.checksum('d0/ghi', { followLinks: true })).rejects.toBeInstanceOf(ContextPathNotFoundError);
    await expect(c.checksum('nosuch')).rejects.toBeInstanceOf(ContextPathNotFoundError);
  });

  it('expands wildcards as BuildKit does', async () => {
    await tree('bar=data1', 'foo=data0', 'fox=data2', 'x/', 'x/d0/', 'x/d0/abc=data0', 'x/d0/def -> abc', 'x/d0/ghi -> nosuchfile');
    await tree('y1 -> foo', 'y2 -> fox');
    const c = await open();
    expect(await c.checksum('f*o')).toBe(sha256(`\0foo${BK.fileData0}`));
    expect(await c.checksum('f*')).toBe(BK.foos);
    expect(await c.checksum('x/d?')).toBe(BK.dirD0FileByFile);
    expect(await c.checksum('x/d?/def', { followLinks: true })).toBe(BK.fileData0);
    expect(await c.checksum('y*', { followLinks: true })).toBe(BK.foos2);
    expect(await c.checksum('nomatch*')).toBe(EMPTY_DIGEST);
    expect(await c.checksum('missing/*')).toBe(EMPTY_DIGEST);
    // A single match named like the pattern's last element is its own digest.
    expect(await c.checksum('x/d0/ab[c]')).toBe(sha256(`\0abc${BK.fileData0}`));
    // Without wildcard expansion the characters are literal.
    await expect(c.checksum('f*', { wildcard: false })).rejects.toBeInstanceOf(ContextPathNotFoundError);
  });

  it('follows only the matched symlinks, not those inside matched directories', async () => {
    await tree('target=data0', 'foo/', 'foo/ghi -> target');
    const c = await open();
    expect(await c.checksum('foo', { followLinks: true })).toBe(BK.dirWithSym);
    expect(await c.checksum('fo?', { followLinks: true })).toBe(BK.wildcardDirWithSym);
  });

  it('builds the tarsum header BuildKit hashes', () => {
    const header = entryHeader({ mode: 0o100755 | 0o4000, size: 3n, rdev: 0, xattrs: [['user.a', Buffer.from('v')]] });
    expect(header.toString('latin1')).toBe('namemode2541uid0gid0size3typeflag0linknameunamegnamedevmajor0devminor0user.av');
    const dev = entryHeader({ mode: 0o020666, size: 0, rdev: (1 << 8) | 3 });
    expect(dev.toString('latin1')).toBe('namemode438uid0gid0size0typeflag3linknameunamegnamedevmajor1devminor3');
    const link = entryHeader({ mode: 0o120777, size: 10, rdev: 0, linkTarget: Buffer.from('t') });
    expect(link.toString('latin1')).toBe('namemode511uid0gid0size0typeflag2linknametunamegnamedevmajor0devminor0');
  });
});

describe('checksum', () => {
  it('does not depend on modification times or ownership', async () => {
    await tree('src/', 'src/a=hello', 'src/b=world');
    const before = await (await open()).checksum('src');
    await utimes(join(ctxDir, 'src/a'), new Date(0), new Date(0));
    await utimes(join(ctxDir, 'src'), new Date(1000), new Date(1000));
    if (process.getuid?.() === 0) execFileSync('chown', ['-R', '1234:5678', join(ctxDir, 'src')]);
    expect(await (await open({ cacheDir: join(root, 'other-cache') })).checksum('src')).toBe(before);
  });

  it('changes with content, mode and symlink target', async () => {
    await tree('d/', 'd/f=one', 'd/l -> f');
    const sums = async () => {
      const c = await open({ cacheDir: join(root, `cache-${opened.length}`) });
      return { dir: await c.checksum('d'), file: await c.checksum('d/f'), link: await c.checksum('d/l') };
    };
    const base = await sums();
    await writeFile(join(ctxDir, 'd/f'), 'two');
    const content = await sums();
    expect(content.file).not.toBe(base.file);
    expect(content.dir).not.toBe(base.dir);
    expect(content.link).toBe(base.link);

    await chmod(join(ctxDir, 'd/f'), 0o755);
    const mode = await sums();
    expect(mode.file).not.toBe(content.file);
    expect(mode.dir).not.toBe(content.dir);

    await rm(join(ctxDir, 'd/l'));
    await symlink('elsewhere', join(ctxDir, 'd/l'));
    const target = await sums();
    expect(target.link).not.toBe(mode.link);
    expect(target.dir).not.toBe(mode.dir);
    expect(target.file).toBe(mode.file);

    await chmod(join(ctxDir, 'd'), 0o700);
    expect((await sums()).dir).not.toBe(target.dir);
  });

  it('covers user xattrs', async () => {
    await tree('f=x');
    const plain = await (await open()).checksum('f');
    try {
      setAttributeSync(join(ctxDir, 'f'), 'user.kiln', 'v');
    } catch {
      return; // file system without user xattrs
    }
    expect(await (await open({ cacheDir: join(root, 'c2') })).checksum('f')).not.toBe(plain);
  });

  it('is the same in another process', async () => {
    await tree('a/', 'a/b=1', 'a/c -> b', 'd=2');
    const here = await (await open()).checksum('.');
    const script = [
      `import { openContext } from ${JSON.stringify(new URL('./index.ts', import.meta.url).pathname)};`,
      `const c = await openContext(${JSON.stringify(ctxDir)}, { cacheDir: ${JSON.stringify(join(root, 'child-cache'))}, ignoreFile: null });`,
      `process.stdout.write(await c.checksum('.') + ' ' + await c.checksum('*'));`,
      'await c.close();',
    ].join('\n');
    const out = execFileSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
      encoding: 'utf8',
      cwd: new URL('../../', import.meta.url).pathname, // where `--import tsx` resolves
    });
    expect(out).toBe(`${here} ${await (await open()).checksum('*')}`);
  });

  it('excluded files never change a directory checksum', async () => {
    await tree('.dockerignore=**/*.log\nsrc/tmp\n', 'src/', 'src/a.ts=a', 'src/debug.log=1', 'src/tmp/', 'src/tmp/x=1');
    const patterns = ['**/*.log', 'src/tmp'];
    const first = await (await open({ ignoreFile: { path: join(ctxDir, '.dockerignore'), patterns } })).checksum('src');
    await writeFile(join(ctxDir, 'src/debug.log'), 'changed');
    await writeFile(join(ctxDir, 'src/other.log'), 'new');
    await rm(join(ctxDir, 'src/tmp/x'));
    const second = await (await open({ ignoreFile: { path: join(ctxDir, '.dockerignore'), patterns } })).checksum('src');
    expect(second).toBe(first);
    // The same directory without the rules is another context.
    expect(await (await open({ cacheDir: join(root, 'c3') })).checksum('src')).not.toBe(first);
    await writeFile(join(ctxDir, 'src/a.ts'), 'b');
    expect(await (await open({ ignoreFile: { path: '', patterns } })).checksum('src')).not.toBe(first);
  });

  it('keys wildcard sources over their sorted matches', async () => {
    await tree('b.ts=b', 'a.ts=a', 'c.js=c', 'lib/', 'lib/x.ts=x');
    const c = await open();
    const a = await c.checksum('a.ts');
    const b = await c.checksum('b.ts');
    expect(await c.checksum('*.ts')).toBe(sha256(`\0a.ts${a}\0b.ts${b}`));
    expect(await c.checksum('/lib/*.ts')).toBe(sha256(`\0x.ts${await c.checksum('lib/x.ts')}`));
    // Adding a non-matching file leaves the key alone; a matching one changes it.
    await writeFile(join(ctxDir, 'd.js'), 'd');
    expect(await (await open({ cacheDir: join(root, 'w1') })).checksum('*.ts')).toBe(await c.checksum('*.ts'));
    await writeFile(join(ctxDir, 'd.ts'), 'd');
    expect(await (await open({ cacheDir: join(root, 'w2') })).checksum('*.ts')).not.toBe(await c.checksum('*.ts'));
    await expect(c.checksum('[*.ts')).rejects.toBeInstanceOf(ContextPatternError);
  });

  it('hashes big batches in worker threads to the same digests', async () => {
    const files: string[] = ['big/'];
    for (let i = 0; i < 150; i++) files.push(`big/f${i}=${'x'.repeat(i * 97)}`);
    await tree(...files);
    await writeFile(join(ctxDir, 'big/large'), Buffer.alloc(3 * 1024 * 1024 + 17, 7));
    try {
      // Workers assume no xattrs and hand such files back to have their header rebuilt.
      setAttributeSync(join(ctxDir, 'big/f3'), 'user.kiln', 'v');
      setAttributeSync(join(ctxDir, 'big/f0'), 'user.kiln', 'empty');
    } catch {
      // file system without user xattrs
    }
    const pooled = await open({ workers: 2 });
    const inline = await open({ workers: 0, cacheDir: join(root, 'inline-cache') });
    expect(await pooled.checksum('big')).toBe(await inline.checksum('big'));
    expect(pooled.stats.filesRead).toBe(150); // f1..f149 and large; the empty f0 is not opened
    expect(await pooled.manifest('big')).toEqual(await inline.manifest('big'));
  });

  it('treats FIFOs and empty files by their metadata without opening them', async () => {
    await tree('empty');
    execFileSync('mkfifo', [join(ctxDir, 'pipe')]);
    const reads: string[] = [];
    const c = await open({ onContentRead: (p) => reads.push(p) });
    expect(await c.checksum('pipe')).toBe(sha256('namemode420uid0gid0size0typeflag6linknameunamegnamedevmajor0devminor0'));
    expect(await c.checksum('empty')).toBe(sha256('namemode420uid0gid0size0typeflag0linknameunamegnamedevmajor0devminor0'));
    expect(reads).toEqual([]);
    expect((await lstat(join(ctxDir, 'pipe'))).isFIFO()).toBe(true);
  });
});

describe('Go path.Match', () => {
  it('matches like Go', () => {
    const m = (p: string, s: string) => new GoPattern(p).matches(s);
    expect(m('*.ts', 'a.ts')).toBe(true);
    expect(m('*.ts', 'a/b.ts')).toBe(false);
    expect(m('/src/*', '/src/a')).toBe(true);
    expect(m('/src/*', '/src/a/b')).toBe(false);
    expect(m('a?c', 'abc')).toBe(true);
    expect(m('a?c', 'a/c')).toBe(false);
    expect(m('[a-c]x', 'bx')).toBe(true);
    expect(m('[^a-c]x', 'dx')).toBe(true);
    expect(m('[^a-c]x', 'bx')).toBe(false);
    expect(m('a\\*', 'a*')).toBe(true);
    expect(m('a\\*', 'ab')).toBe(false);
    expect(m('a*b*c', 'aXbYbZc')).toBe(true);
    expect(m('*', '')).toBe(true);
    expect(m('é?', 'éü')).toBe(true);
    for (const bad of ['[', '[]', '[a-', 'a\\', '[-a]', '[a-]']) expect(() => new GoPattern(bad)).toThrow(ContextPatternError);
  });

  it('finds the fixed prefix', () => {
    expect(splitWildcards('/src/*.ts')).toEqual(['/src', '*.ts']);
    expect(splitWildcards('/*')).toEqual(['/', '*']);
    expect(splitWildcards('/a/b?/c')).toEqual(['/a', 'b?/c']);
    expect(containsWildcards('a\\*b')).toBe(false);
    expect(containsWildcards('a[b')).toBe(true);
  });
});
