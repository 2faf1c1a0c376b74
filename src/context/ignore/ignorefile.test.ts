import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { InputFileError } from '../../errors.js';
import { findIgnoreFile, readIgnoreFile } from './ignorefile.js';

describe('readIgnoreFile', () => {
  it('reads patterns like ignorefile.ReadAll', () => {
    const text = 'test1\n/test2\n/a/file/here\n\nlastfile\n# this is a comment\n! /inverted/abs/path\n!\n! ';
    expect(readIgnoreFile(text)).toEqual(['test1', 'test2', 'a/file/here', 'lastfile', '!inverted/abs/path', '!', '!']);
    expect(readIgnoreFile(null)).toEqual([]);
    expect(readIgnoreFile('')).toEqual([]);
  });

  it('treats # as a comment only in column 0', () => {
    expect(readIgnoreFile('# c\n  # not a comment\n#\n\t#x')).toEqual(['# not a comment', '#x']);
  });

  it('strips a BOM at the start only, CRs at line ends, and Go white space', () => {
    expect(readIgnoreFile('\ufeff# c\r\na\r\n\ufeffb\n\u0085c\u00a0\n')).toEqual(['a', '\ufeffb', 'c']);
    expect(readIgnoreFile(Buffer.from('\xef\xbb\xbfx\n', 'latin1'))).toEqual(['x']);
  });

  it('cleans and drops one leading slash', () => {
    expect(readIgnoreFile('/\n//a//b/\n./c/../d\n../e\n!./f\n!/')).toEqual(['/', 'a/b', 'd', '../e', '!f', '!/']);
  });

  it('fails like BuildKit on a line of 64 KiB or more', () => {
    expect(readIgnoreFile('a'.repeat(65535) + '\nb')).toHaveLength(2);
    expect(() => readIgnoreFile('x\n' + 'a'.repeat(65536), 'ctx/.dockerignore')).toThrow(InputFileError);
    expect(() => readIgnoreFile('é'.repeat(32768))).toThrow(/longer than/);
  });
});

describe('findIgnoreFile', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'kiln-ignorefile-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('returns none without ignore files', async () => {
    expect(await findIgnoreFile(dir)).toBeUndefined();
  });

  it('uses the context .dockerignore', async () => {
    await writeFile(join(dir, '.dockerignore'), 'node_modules\n');
    expect(await findIgnoreFile(dir)).toEqual({ path: join(dir, '.dockerignore'), patterns: ['node_modules'] });
  });

  it('prefers <Dockerfile>.dockerignore next to the Dockerfile, even an empty one', async () => {
    await writeFile(join(dir, '.dockerignore'), 'a\n');
    await writeFile(join(dir, 'Dockerfile.dockerignore'), 'b\n');
    expect((await findIgnoreFile(dir))?.patterns).toEqual(['b']);

    await mkdir(join(dir, 'build'));
    await writeFile(join(dir, 'build', 'app.Dockerfile.dockerignore'), '');
    const found = await findIgnoreFile(dir, join(dir, 'build', 'app.Dockerfile'));
    expect(found).toEqual({ path: join(dir, 'build', 'app.Dockerfile.dockerignore'), patterns: [] });

    // A Dockerfile from stdin has no companion file.
    expect((await findIgnoreFile(dir, '-'))?.patterns).toEqual(['a']);
  });

  it('treats a directory in the way as absent', async () => {
    await mkdir(join(dir, 'Dockerfile.dockerignore'));
    await writeFile(join(dir, '.dockerignore'), 'a\n');
    expect((await findIgnoreFile(dir))?.patterns).toEqual(['a']);
  });
});
