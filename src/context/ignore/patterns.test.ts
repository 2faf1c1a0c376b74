import { describe, expect, it } from 'vitest';
import { KilnError } from '../../errors.js';
import { IgnorePatternError } from './errors.js';
import { goClean, goDir, goTrimSpace, compareNames } from './gopath.js';
import { MatchInfo, PatternMatcher, isValidGlob, matches, matchesOrParentMatches, translatePattern } from './patterns.js';

/** Paths (from `candidates`) that a single pattern excludes, or 'error' for a match-time failure. */
function excluded(pattern: string, candidates: string[]): string[] | 'error' {
  const pm = new PatternMatcher([pattern]);
  try {
    return candidates.filter((p) => pm.matchesOrParentMatches(p));
  } catch (err) {
    if (err instanceof IgnorePatternError) return 'error';
    throw err;
  }
}

describe('Go path helpers', () => {
  it('cleans like path.Clean', () => {
    const cases: Record<string, string> = {
      '': '.', '/': '/', '//': '/', 'a/': 'a', 'a//b': 'a/b', './a': 'a', 'a/.': 'a', '..': '..', '../a': '../a',
      'a/..': '.', '/..': '/', '/a/../..': '/', 'a/b/../../..': '..', '...': '...', '!./x': '!./x', '/a/': '/a',
    };
    for (const [input, want] of Object.entries(cases)) expect(goClean(input), input).toBe(want);
  });

  it('takes the directory like path.Dir', () => {
    expect(goDir('a/b/c')).toBe('a/b');
    expect(goDir('file')).toBe('.');
    expect(goDir('file/')).toBe('file');
    expect(goDir('/')).toBe('/');
    expect(goDir('/x')).toBe('/');
  });

  it('trims the white space Go trims, not what JS trims', () => {
    expect(goTrimSpace('\u0085 a \u00a0\u3000')).toBe('a');
    expect(goTrimSpace('\ufeffa\ufeff')).toBe('\ufeffa\ufeff');
  });

  it('orders names by UTF-8 bytes', () => {
    const names = ['b', '😀', 'a', '\ue000', 'B', '_', 'é', 'a0'];
    expect(names.sort(compareNames)).toEqual(['B', '_', 'a', 'a0', 'b', 'é', '\ue000', '😀']);
  });
});

describe('PatternMatcher construction', () => {
  it('trims, drops empty entries, flags exceptions', () => {
    const pm = new PatternMatcher(['  docs ', '', '\t', '!docs/README.md  ']);
    expect(pm.patterns.map(String)).toEqual(['docs', '!docs/README.md']);
    expect(pm.exclusions()).toBe(true);
    expect(new PatternMatcher(['a']).exclusions()).toBe(false);
  });

  it('cleans patterns, before taking off the ! (as BuildKit does)', () => {
    expect(new PatternMatcher(['a/../b//c/', './x']).patterns.map(String)).toEqual(['b/c', 'x']);
    // `!./x` cleans to itself, so the exception is for the literal path "./x" and never applies.
    expect(new PatternMatcher(['*', '!./x']).matchesOrParentMatches('x')).toBe(true);
    // A leading slash is only removed by the ignore-file reader, not by the matcher.
    expect(new PatternMatcher(['/foo']).matchesOrParentMatches('foo')).toBe(false);
  });

  it('rejects a lone ! and malformed globs with a typed error', () => {
    for (const bad of [['!'], ['  !  '], ['!/'], ['['], ['a['], ['[^'], ['[]a]'], ['[-x]'], ['[x-]'], ['[a-b-c]'], ['a\\'], ['ok', '!x[']]) {
      let caught: unknown;
      try {
        new PatternMatcher(bad);
      } catch (err) {
        caught = err;
      }
      expect(caught, JSON.stringify(bad)).toBeInstanceOf(IgnorePatternError);
      expect(caught).toBeInstanceOf(KilnError);
      expect((caught as KilnError).code).toBe('IGNORE_PATTERN');
    }
  });

  it('validates globs like filepath.Match, including after a star', () => {
    expect(isValidGlob('[\\]a]')).toBe(true);
    expect(isValidGlob('[\\-x]')).toBe(true);
    expect(isValidGlob('a*b[^c')).toBe(false);
    expect(isValidGlob('[l-O]')).toBe(true); // a reversed range is only a regexp error
  });
});

describe('matching', () => {
  it('lets the last matching pattern decide, with parents', () => {
    const pm = new PatternMatcher(['docs', '!docs/keep', 'docs/keep/secret']);
    expect(pm.matchesOrParentMatches('docs/z')).toBe(true);
    expect(pm.matchesOrParentMatches('docs/keep/y')).toBe(false);
    expect(pm.matchesOrParentMatches('docs/keep/secret/x')).toBe(true);
    expect(pm.matchesOrParentMatches('other')).toBe(false);
  });

  it('implements ** forms', () => {
    const paths = ['a', 'a/b', 'x/a', 'x/y/a', 'ab', 'xa', 'a/b/c.txt'];
    expect(excluded('**/a', paths)).toEqual(['a', 'a/b', 'x/a', 'x/y/a', 'a/b/c.txt']);
    expect(excluded('**a', paths)).toEqual(['a', 'a/b', 'x/a', 'x/y/a', 'xa', 'a/b/c.txt']);
    expect(excluded('a/**', paths)).toEqual(['a/b', 'a/b/c.txt']);
    expect(excluded('a**', paths)).toEqual(['a', 'a/b', 'ab', 'a/b/c.txt']);
    expect(excluded('**/*.txt', paths)).toEqual(['a/b/c.txt']);
    expect(excluded('*', paths)).toEqual(paths);
  });

  it('keeps BuildKit regexp quirks (checked against moby/patternmatcher)', () => {
    const paths = ['ad', 'a5', '*', ']', '[]', 'a', 'aa', 'aaa', 'x', 'yy', 'A', 'é', 'ab', 'a.b', 'foo', 'q'];
    expect(excluded('a\\d', paths)).toEqual(['a5']); // \d stays a regexp digit class
    expect(excluded('[*]', paths)).toEqual([']', '[]']); // the class closes at the ] of the translated *
    expect(excluded('a{2}*', paths)).toEqual(['aa', 'aaa']); // { } are not escaped: counted repetition
    expect(excluded('x|y*', paths)).toEqual(['x', 'yy']); // | is not escaped: alternation
    expect(excluded('q|z*', ['q', 'zz', 'aq', 'xzz/'])).toEqual(['q', 'zz', 'xzz/']); // ...and unanchored on the right
    expect(excluded('[[:alpha:]]', paths)).toEqual(['a', 'x', 'A', 'q']); // ASCII only
    expect(excluded('\\x41*', paths)).toEqual(['A']);
    expect(excluded('a{bc', ['a{bc'])).toEqual(['a{bc']); // not a count: literal
    expect(excluded('[l-O]', paths)).toBe('error'); // passes the glob check, fails to compile
    expect(excluded('a\\é', paths)).toBe('error');
  });

  it('reports a pattern that fails to compile each time it is evaluated, and only then', () => {
    const pm = new PatternMatcher(['[Local-Only]/']);
    expect(() => pm.matchesOrParentMatches('x')).toThrow(IgnorePatternError);
    expect(() => pm.matchesOrParentMatches('x')).toThrow(IgnorePatternError);
    // Not evaluated when it cannot change the answer (the path is not excluded yet, and it is an exception).
    expect(new PatternMatcher(['!a[l-O]', 'b']).matchesOrParentMatches('b')).toBe(true);
  });

  it('keeps classic glob character classes', () => {
    expect(excluded('a[b-d]e', ['ace', 'aae', 'ae'])).toEqual(['ace']);
    expect(excluded('a[^b-d]e', ['aze', 'ace'])).toEqual(['aze']);
    expect(excluded('a?b', ['a☺b', 'a/b', 'ab'])).toEqual(['a☺b']);
    expect(excluded('*[a-ζ]', ['α', 'A'])).toEqual(['α']);
    expect(excluded('a\\*b', ['a*b', 'ab', 'axb'])).toEqual(['a*b']);
  });

  it('offers the incremental API a walker uses', () => {
    const pm = new PatternMatcher(['foo*', '!foo/bar2']);
    const foo = pm.matchesUsingParentResults('foo', MatchInfo.none);
    expect(foo.matched).toBe(true);
    expect(pm.matchesUsingParentResults('foo/bar2', foo.info).matched).toBe(false);
    expect(pm.matchesUsingParentResults('foo/other', foo.info).matched).toBe(true);
    // Without parent information it falls back to checking the parents itself.
    expect(pm.matchesUsingParentResults('foo/other').matched).toBe(true);
    expect(() => new PatternMatcher(['a']).matchesUsingParentResults('a/b', foo.info)).toThrow(RangeError);
  });

  it('keeps the legacy single-parent Matches', () => {
    const pm = new PatternMatcher(['**/b']);
    expect(pm.matchesOrParentMatches('x/y/b/c')).toBe(true);
    expect(pm.matches('x/y/b/c')).toBe(false);
    expect(pm.matches('x/b/c')).toBe(true);
    expect(matches('.', ['*'])).toBe(false);
    expect(matches('./x/', ['x'])).toBe(true);
    expect(matchesOrParentMatches('x/y/b/c', ['**/b'])).toBe(true);
    expect(() => matches('a', ['['])).toThrow(IgnorePatternError);
  });

  it('classifies like BuildKit', () => {
    expect(translatePattern('abc.def')).toEqual({ matchType: 'exact', regexp: undefined });
    expect(translatePattern('dir/**')).toEqual({ matchType: 'prefix', regexp: undefined });
    expect(translatePattern('**/dir')).toEqual({ matchType: 'suffix', regexp: undefined });
    expect(translatePattern('**/dir2/*')).toEqual({ matchType: 'regexp', regexp: '^(.*/)?dir2/[^/]*$' });
    expect(translatePattern('a.|)$(}+{bc')).toEqual({ matchType: 'exact', regexp: undefined });
  });

  it('stays fast on patterns that make backtracking engines explode', () => {
    const pm = new PatternMatcher(['*a*a*a*a*a*a*a*a*a*a*b', '**/**/**/**/**/**/**/**/**/x', 'a{0,100}a{0,100}a{0,100}b']);
    const start = performance.now();
    for (let i = 0; i < 20; i++) {
      expect(pm.matchesOrParentMatches('a'.repeat(250 + i))).toBe(false);
      expect(pm.matchesOrParentMatches(Array.from({ length: 40 }, () => 'dir').join('/') + `/f${i}`)).toBe(false);
    }
    expect(performance.now() - start).toBeLessThan(2000);
  });
});
