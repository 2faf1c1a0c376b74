import { describe, expect, it } from 'vitest';
import { compileRe2 } from './re2.js';

function re(source: string) {
  const r = compileRe2(source);
  if (!r.ok) throw new Error(`${source}: ${r.error}`);
  return r.program;
}

describe('RE2 subset', () => {
  it('rejects what Go rejects', () => {
    for (const bad of ['a**', '*a', 'a|*', '(', ')', '(a', '[a', '[z-a]', '\\8', '\\1', '\\xZ1', '\\x4', 'a{1001}', 'a{2,1}', '[[:foo:]]', '\\pX', '\\p', '\\C', '\\é', 'x\\', '[]']) {
      expect(compileRe2(bad).ok, bad).toBe(false);
    }
  });

  it('accepts what Go accepts', () => {
    for (const good of ['^*', 'a{01}', 'a{,2}', '[]a]', '[^]a]', '[a-]', '[\\d-z]', '\\_', '\\Qa*(\\E', 'a{0}', '|', '()', 'x*?', '[[:^digit:]]', '\\p{Greek}', '\\PL', '\\p{^L}']) {
      expect(compileRe2(good).ok, good).toBe(true);
    }
  });

  it('uses Go semantics for classes and escapes', () => {
    expect(re('^.$').test('\n')).toBe(false);
    expect(re('^.$').test('\r')).toBe(true); // JS . excludes \r, Go does not
    expect(re('^\\s$').test('\u00a0')).toBe(false); // ASCII only
    expect(re('^\\s$').test('\v')).toBe(false);
    expect(re('^[^a]$').test('\n')).toBe(true);
    expect(re('^\\12$').test('\n')).toBe(true); // octal
    expect(re('^\\x41\\x{1F600}$').test('A😀')).toBe(true);
    expect(re('^[]a]$').test(']')).toBe(true);
    expect(re('^\\Qa.b').test('a.bc')).toBe(true);
    expect(re('^\\Qa.b').test('axb')).toBe(false);
    expect(re('^[[:punct:]]$').test('~')).toBe(true);
    expect(re('^\\pL$').test('é')).toBe(true);
    expect(re('^\\pC$').test('\u0378')).toBe(false); // unassigned: not in Go's C
    expect(re('^\\bab\\b$').test('ab')).toBe(true);
    expect(re('a\\Bb').test('ab')).toBe(true);
    expect(re('^?').test('anything')).toBe(true);
  });

  it('searches unanchored unless every alternative starts with ^', () => {
    expect(re('b').test('abc')).toBe(true);
    expect(re('^b').test('abc')).toBe(false);
    expect(re('^x|c$').test('abc')).toBe(true);
    expect(re('^a{2,3}$').test('aaa')).toBe(true);
    expect(re('^a{2,3}$').test('aaaa')).toBe(false);
    expect(re('^a{2,}$').test('aaaaa')).toBe(true);
    expect(re('^(ab)+$').test('ababab')).toBe(true);
  });

  it('matches code points, not UTF-16 units', () => {
    expect(re('^[^/]$').test('😀')).toBe(true);
    expect(re('^[^/][^/]$').test('😀')).toBe(false);
  });

  it('runs in linear time', () => {
    const p = re('^[^/]*a[^/]*a[^/]*a[^/]*a[^/]*a[^/]*a[^/]*a[^/]*a[^/]*b$');
    const subject = 'a'.repeat(20000);
    const start = performance.now();
    expect(p.test(subject)).toBe(false);
    expect(performance.now() - start).toBeLessThan(2000);
  });
});
