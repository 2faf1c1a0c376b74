import { describe, expect, it } from 'vitest';
import { containsWildcards, goMatch, splitWildcards } from './match.js';
import { classifySource, parseGitRef, urlFileName } from './sources.js';

describe('path.Match', () => {
  it.each([
    ['*.go', 'foo.go', true],
    ['*.go', 'a/foo.go', false],
    ['*/dir2/foo', 'dir1/dir2/foo', true],
    ['?.txt', 'a.txt', true],
    ['?', '/', false],
    ['[a-c]x', 'bx', true],
    ['[^a-c]x', 'dx', true],
    ['[^a-c]x', 'ax', false],
    ['[!a]', '!', true],
    ['\\*', '*', true],
    ['\\*', 'a', false],
    ['a[', 'a[', false],
    ['[]a]', ']', false],
    ['[z-a]', 'q', false],
    ['ä*', 'äöü', true],
    ['[ä-ü]', 'ö', true],
    ['abc', 'abc', true],
  ])('Match(%j, %j) = %s', (pattern, name, want) => {
    expect(goMatch(pattern, name)).toBe(want);
  });

  it('detects and splits wildcards like fsutil', () => {
    expect(containsWildcards('a/b\\*c')).toBe(false);
    expect(containsWildcards('a/[bc]')).toBe(true);
    expect(splitWildcards('/sub/*/dir2/foo')).toEqual({ dir: '/sub', pattern: '*/dir2/foo' });
    expect(splitWildcards('/*.txt')).toEqual({ dir: '/', pattern: '*.txt' });
  });
});

describe('source kinds', () => {
  it('tells git references, URLs and paths apart as the Dockerfile frontend does', () => {
    expect(classifySource('https://example.com/repo.git#main:sub/dir').kind).toBe('git');
    expect(classifySource('git@github.com:moby/buildkit.git').kind).toBe('git');
    expect(classifySource('ssh://git@host/x').kind).toBe('git');
    expect(classifySource('https://example.com/file.tar.gz').kind).toBe('http');
    expect(classifySource('http://example.com/').kind).toBe('http');
    expect(classifySource('github.com/foo/bar').kind).toBe('local');
    expect(classifySource('./x.git').kind).toBe('local');
    expect(classifySource('src/app').kind).toBe('local');
  });

  it('parses fragments and queries', () => {
    expect(parseGitRef('https://h/r.git#v1.2:/a/../b/')).toMatchObject({ remote: 'https://h/r.git', ref: 'v1.2', subDir: 'b' });
    expect(parseGitRef('https://h/r.git?tag=v1&subdir=docs&keep-git-dir=true')).toMatchObject({
      ref: 'refs/tags/v1',
      subDir: 'docs',
      keepGitDir: true,
    });
    expect(parseGitRef('git@h:o/r.git?branch=dev#')).toMatchObject({ remote: 'git@h:o/r.git', ref: 'refs/heads/dev' });
    expect(() => parseGitRef('https://h/r.git?bogus=1')).toThrow('unexpected query "bogus"');
    expect(() => parseGitRef('https://h/r.git#main?ref=dev'.replace('#main', '?ref=main&ref=dev'))).toThrow('multiple values');
  });

  it('names downloads after the URL path', () => {
    expect(urlFileName('https://h/a/b/file.tar.gz?x=1')).toBe('file.tar.gz');
    expect(urlFileName('https://h/dir/')).toBe('dir');
    expect(urlFileName('https://h/')).toBe('__unnamed__');
    expect(urlFileName('https://h/test-%C3%A4.txt')).toBe('test-ä.txt');
  });
});
