import { describe, expect, it } from 'vitest';
import {
  PatternSyntaxError,
  ShellPattern,
  codePoints,
  expandTemplate,
  replaceAll,
  replaceFirst,
  reversePattern,
  trimPrefix,
  trimSuffix,
} from './pattern.js';

const p = (s: string): ShellPattern => ShellPattern.parse(s);

describe('ShellPattern.parse', () => {
  it('builds the regexp BuildKit would build', () => {
    expect(p('*').regexpSource(true, true)).toBe('^.*');
    expect(p('a*b?').regexpSource(false, false)).toBe('a.*?b.');
    expect(p('\\*\\?\\\\\\}\\/').regexpSource(true, true)).toBe('^\\*\\?\\\\\\}/');
    expect(p('[x]{1}.+()|^$').regexpSource(true, false)).toBe('\\[x\\]\\{1\\}\\.\\+\\(\\)\\|\\^\\$');
  });

  it('rejects other backslash escapes with BuildKit wording', () => {
    expect(() => p('\\x')).toThrow(new PatternSyntaxError("invalid escape '\\x'"));
    expect(() => p('\\')).toThrow(PatternSyntaxError);
    expect(() => p('\\\\\\')).toThrow(PatternSyntaxError);
  });

  it('skips a byte-order mark that starts the pattern', () => {
    expect(p('\uFEFFa\uFEFF').regexpSource(true, false)).toBe('a\uFEFF');
  });
});

describe('reversePattern', () => {
  // BuildKit's TestReversePattern table.
  it.each([
    ['a\\*c', 'c\\*a'],
    ['\\\\\\ab', 'b\\a\\\\'],
    ['ab\\', '\\ba'],
    ['👽\\🚀🖖', '🖖\\🚀👽'],
    ['\\\\b', 'b\\\\'],
  ])('%s -> %s', (input, expected) => {
    expect(reversePattern(input)).toBe(expected);
  });
});

describe('matching', () => {
  it('chooses what a backtracking engine chooses first', () => {
    // Greedy stars are filled left to right, each as long as the rest still allows.
    const m = p('*a*').matcher(codePoints('xaxa'), true);
    expect(m.matchAt(0)).toBe(4);
    expect(p('*a').matcher(codePoints('xaxa'), false).matchAt(0)).toBe(2);
    expect(p('b*').matcher(codePoints('abcb'), true).find(0)).toEqual([1, 4]);
    expect(p('z').matcher(codePoints('abc'), true).find(0)).toBeUndefined();
  });

  it('trims by code point, not UTF-16 unit', () => {
    expect(trimPrefix(p('?'), '👽x', false)).toBe('x');
    expect(trimSuffix(p(reversePattern('?')), 'x👽', false)).toBe('x');
    expect(replaceFirst(p('?'), '👽👽', '-')).toBe('-👽');
  });

  it('replaces all as Go ReplaceAllString does', () => {
    expect(replaceAll(p(''), 'ab', '-')).toBe('-a-b-');
    expect(replaceAll(p('*'), 'ab\ncd', '-')).toBe('-\n-');
    expect(replaceAll(p('b*'), 'abcb', '-')).toBe('a-');
    expect(() => replaceAll(p(''), 'abc', 'xxxx', 10)).toThrow();
  });

  it('stays linear-ish where backtracking would not', () => {
    const value = 'a'.repeat(3000);
    const pattern = p('*a'.repeat(100) + '*b');
    const start = Date.now();
    expect(trimPrefix(pattern, value, true)).toBe(value);
    expect(trimPrefix(pattern, value, false)).toBe(value);
    expect(replaceAll(pattern, value, 'x')).toBe(value);
    expect(Date.now() - start).toBeLessThan(5000);
  });
});

describe('expandTemplate', () => {
  it('handles $0, ${0}, $$ and unknown or malformed references like Go', () => {
    const t = (s: string): string => expandTemplate(s, () => 'M');
    expect(t('<$0|${0}|$$|$1|$x|${x}|$00|$0a|$.|${0|$>|$')).toBe('<M|M|$||||||$.|${0|$>|$');
    expect(t('$٣')).toBe('');
  });
});
