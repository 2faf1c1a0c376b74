import { describe, expect, it } from 'vitest';
import { DockerfileError, KilnError } from '../../errors.js';
import { MAX_NESTING, ShellExpansionError, ShellLex, envFromList, envFromRecord, type ShellLexOptions } from './index.js';

const lex = new ShellLex('\\');

function word(input: string, env: Record<string, string> = {}, lexer: ShellLex = lex): string {
  return lexer.processWord(input, envFromRecord(env));
}

function words(input: string, env: Record<string, string> = {}, lexer: ShellLex = lex): string[] {
  return lexer.processWords(input, envFromRecord(env));
}

function failure(input: string, env: Record<string, string> = {}, lexer: ShellLex = lex): ShellExpansionError {
  try {
    lexer.processWord(input, envFromRecord(env));
  } catch (err) {
    expect(err).toBeInstanceOf(ShellExpansionError);
    return err as ShellExpansionError;
  }
  throw new Error(`expected ${JSON.stringify(input)} to fail`);
}

function withOptions(options: ShellLexOptions, escape: '\\' | '`' = '\\'): ShellLex {
  return new ShellLex(escape, options);
}

describe('ShellLex: expansion', () => {
  it('expands plain and braced references, unset ones to nothing', () => {
    expect(word('$A-${A}-$B-${B}x', { A: 'a' })).toBe('a-a--x');
  });

  it('reads names as BuildKit does: letters/digits/_, digit runs, one special parameter', () => {
    expect(
      word('$1 $10x $@x $-x ${#} ${##} ${?:-q} $안녕 ${안녕:-k} $٣x', { 안녕: 'hi' }),
    ).toBe(' x x x   q hi hi x');
  });

  it('keeps a $ that starts no name', () => {
    expect(word('$ $. a$')).toBe('$ $. a$');
  });

  it('expands the modifiers on set, empty and unset variables', () => {
    const env = { S: 'set', E: '' };
    expect(word('${S-d}|${E-d}|${U-d}|${S:-d}|${E:-d}|${U:-d}', env)).toBe('set||d|set|d|d');
    expect(word('${S+a}|${E+a}|${U+a}|${S:+a}|${E:+a}|${U:+a}', env)).toBe('a|a||a||');
    expect(word('${S?m}|${E?m}|${S:?m}', env)).toBe('set||set');
  });

  it('expands the word of a modifier even when it is not used, and reports what it referenced', () => {
    const r = lex.processWordWithMatches('${S:-$A}${U:+$B}', envFromRecord({ S: 's', A: 'a' }));
    expect(r.result).toBe('s');
    expect([...r.matched].sort()).toEqual(['A', 'S']);
    expect([...r.unmatched].sort()).toEqual(['B', 'U']);
    expect(r.words).toEqual(['s']);
  });

  it('accepts the empty name when the environment defines it, as BuildKit does', () => {
    expect(lex.processWord('${+x}|${/a/b}|$', envFromList(['=empty']))).toBe('x|empty|$');
  });
});

describe('ShellLex: quotes and escapes', () => {
  it('removes quotes; single quotes are literal, double quotes expand', () => {
    expect(word(`'$A' "$A" "'$A'" '"'`, { A: 'a' })).toBe(`$A a 'a' "`);
  });

  it('escapes only " $ and the escape token inside double quotes', () => {
    expect(word('"\\" \\$ \\x \\\\"')).toBe('" $ \\x \\');
  });

  it('drops an escape token at the end of the word', () => {
    expect(word('abc\\')).toBe('abc');
  });

  it('rawQuotes keeps the quote characters', () => {
    expect(word(`a'b c'"d $X"\\e`, { X: '1' }, withOptions({ rawQuotes: true }))).toBe(`a'b c'"d 1"e`);
  });

  it('rawEscapes keeps escape tokens, also twice before a character that needs no escape', () => {
    const raw = withOptions({ rawEscapes: true });
    expect(word('a\\ b "c\\d\\"" ${X#\\*}', { X: '*y' }, raw)).toBe('a\\ b c\\\\d\\" y');
    expect(word('"a\\" \\$ \\x \\\\"', {}, raw)).toBe('a\\" \\$ \\\\x \\\\');
  });

  it('skipProcessQuotes treats quotes as ordinary characters', () => {
    expect(words(`'a b' "$X"`, { X: '1 2' }, withOptions({ skipProcessQuotes: true }))).toEqual([`'a`, `b'`, '"1', '2"']);
  });

  it('uses a backtick escape token when asked, leaving backslashes alone', () => {
    const tick = withOptions({}, '`');
    expect(word('a`$X `"b`" ``c "`"x`$X`y\\"', { X: '1' }, tick)).toBe('a$X "b" `c "x$X`y\\');
    expect(word('C:\\path\\$X "C:\\dir\\"', { X: '1' }, tick)).toBe('C:\\path\\1 C:\\dir\\');
    expect(word('a`', {}, tick)).toBe('a');
    // Patterns always use backslash escapes; the backtick is an ordinary pattern character there.
    expect(word('${X#`*}', { X: '`*a' }, tick)).toBe('*a');
  });

  it('rejects escape tokens other than backslash and backtick', () => {
    expect(() => new ShellLex('#' as '\\')).toThrow(TypeError);
  });

  it('skips a byte-order mark only as the very first character', () => {
    expect(word('\uFEFF$X \uFEFF', { X: '1' })).toBe('1 \uFEFF');
  });
});

describe('ShellLex: skipUnsetEnv', () => {
  it('writes references to unset variables back (with one slash for //)', () => {
    const skip = withOptions({ skipUnsetEnv: true });
    expect(
      word('$U ${U} ${U:-d} ${U-d} ${U:+a} ${U?m} ${U#p} ${U##p} ${U%p} ${U/a/b} ${U//a/b} $X', { X: '1' }, skip),
    ).toBe('$U ${U} ${U:-d} ${U-d} ${U:+a} ${U?m} ${U#p} ${U##p} ${U%p} ${U/a/b} ${U/a/b} 1');
  });
});

describe('ShellLex: patterns', () => {
  it('trims shortest and longest prefixes and suffixes', () => {
    expect(word('${X#*a*a}|${X##*a*a}|${X%a*a*}|${X%%a*a*}', { X: 'xaxaxax' })).toBe('xax|x|xax|x');
    expect(word('${X#*a}|${X##*a}|${X%a*}|${X%%a*}', { X: 'banana' })).toBe('nana||banan|b');
  });

  it('treats [ and ] literally (no bracket expressions, as in BuildKit)', () => {
    expect(word('${X/[ab]/-}|${X#[}', { X: '[ab]x' })).toBe('-x|ab]x');
  });

  it('never lets * or ? match a newline', () => {
    expect(word('${X##*}|${X#*}|${X%%*}|${X%*}|${X/?/-}|${X//?/-}', { X: 'ab\ncd' })).toBe(
      '\ncd|ab\ncd|ab\n|ab\ncd|-b\ncd|--\n--',
    );
  });

  it('replaces the first or every match, with Go semantics for empty matches', () => {
    expect(word('${X/a*a/-}|${X//a?/-}', { X: 'xaxaxax' })).toBe('x-x|x---');
    expect(word('${X//x*/-} ${X//*/-} ${Y//b*/-} ${Y//$E/-}', { X: 'abc', Y: 'abcb', E: '' })).toBe(
      'abc - a- -a-b-c-b-',
    );
  });

  it('expands $0 / $$ in a replace-all replacement as Go regexp templates do; a single replace is literal', () => {
    const env = { X: 'banana', R: '<$0|$$|${0}|$1|$x|$.|$>|$00|${0' };
    expect(word('${X//a/$R}', env)).toBe('b<a|$|a|||$.|$>||${0n<a|$|a|||$.|$>||${0n<a|$|a|||$.|$>||${0');
    expect(word('${X/a/$R}', env)).toBe('b<$0|$$|${0}|$1|$x|$.|$>|$00|${0nana');
    expect(word('${X//a/\\$0}', { X: 'banana' })).toBe('b\\an\\an\\a');
  });

  it('stays fast on patterns that make backtracking engines explode', () => {
    const env = { A: 'a'.repeat(5000), P: '*a'.repeat(50) + '*b' };
    const start = Date.now();
    expect(word('${A#$P}|${A##$P}|${A%$P}|${A/$P/x}', env)).toBe(`${env.A}|${env.A}|${env.A}|${env.A}`);
    expect(Date.now() - start).toBeLessThan(5000);
  });
});

describe('ShellLex: word splitting', () => {
  it('splits at white space outside quotes, including white space from variables', () => {
    expect(words('a "b  c" ${S}d \\ e', { S: ' x  y ' })).toEqual(['a', 'b  c', 'x', 'y', 'd', ' e']);
    expect(words('a"${S}"d', { S: ' x  y ' })).toEqual(['a x  y d']);
  });

  it('uses Unicode white space like Go (NBSP, ideographic space), but not U+FEFF', () => {
    expect(words('a\tb\u00a0c\u3000d')).toEqual(['a', 'b', 'c', 'd']);
    expect(words('$X', { X: 'a\u00a0b\u0085c\ufeffd' })).toEqual(['a', 'b', 'c\ufeffd']);
  });

  it('keeps a heredoc marker with its delimiter', () => {
    expect(words('x <<EOF <<  "E F" <y')).toEqual(['x', '<<EOF', '<<  E F', '<y']);
  });

  it('keeps text before a ${VAR<modifier>...} in the same word', () => {
    // Current BuildKit loses "hello" / "pre" here (its word buffer is shared with the nested word);
    // kiln keeps the behaviour BuildKit had before that regression (see WordCollector).
    expect(words('hello${X:-abc} "a"b')).toEqual(['helloabc', 'ab']);
    expect(words('pre"${X:-a b}"post x${Y}y', { Y: '1 2' })).toEqual(['prea bpost', 'x1', '2y']);
  });

  it('drops empty quoted words', () => {
    expect(words(`'' a "" b`)).toEqual(['a', 'b']);
  });
});

describe('ShellLex: errors', () => {
  const cases: [string, Record<string, string>, string][] = [
    ['${X=y}', {}, 'unsupported modifier (=) in substitution'],
    ['${X:=y}', {}, 'unsupported modifier (:=) in substitution'],
    ['${X:x}', {}, 'unsupported modifier (:x) in substitution'],
    ['${X:#a}', { X: 'a' }, 'unsupported modifier (:#) in substitution'],
    ['${}', {}, 'syntax error: bad substitution'],
    ['${:-a}', {}, 'syntax error: bad substitution'],
    ['${X', {}, "syntax error: missing '}'"],
    ['${X:-a', {}, "syntax error: missing '}'"],
    ['${X/a', {}, "syntax error: missing '/' in ${}"],
    ['${X/a/b', {}, "syntax error: missing '}'"],
    ['${X?}', {}, 'X: is not allowed to be unset'],
    ['${X:?}', { X: '' }, 'X: is not allowed to be empty'],
    ['${X:?custom $Y}', { Y: 'msg' }, 'X: custom msg'],
    ['${X#\\x}', { X: 'a' }, "invalid pattern (\\x) in substitution: invalid escape '\\x'"],
    ['${X%ab\\x}', { X: 'a' }, "invalid pattern (ab\\x) in substitution: invalid escape '\\x'"],
    ["'abc", {}, 'unexpected end of statement while looking for matching single-quote'],
    ['"abc', {}, 'unexpected end of statement while looking for matching double-quote'],
    ['${X:-${Y:?oops}}', {}, 'Y: oops'],
    ['${X:-${Y:?oops}', {}, "syntax error: missing '}'"],
  ];
  for (const [input, env, reason] of cases) {
    it(`${input} -> ${reason}`, () => {
      const err = failure(input, env);
      expect(err.reason).toBe(reason);
      expect(err.word).toBe(input);
    });
  }

  it('is a DockerfileError worded like BuildKit, without a location until one is given', () => {
    const err = failure('a"${X:?must be set}"', {});
    expect(err).toBeInstanceOf(DockerfileError);
    expect(err).toBeInstanceOf(KilnError);
    expect(err.code).toBe('DOCKERFILE');
    expect(err.location).toBeUndefined();
    expect(err.reason).toBe('X: must be set');
    expect(err.message).toBe('failed to process "a\\"${X:?must be set}\\"": X: must be set');
    const placed = err.at({ file: 'Dockerfile', line: 3 });
    expect(placed).toBeInstanceOf(ShellExpansionError);
    expect(placed.location).toEqual({ file: 'Dockerfile', line: 3 });
    expect(placed.message).toBe(`Dockerfile:3: ${err.message}`);
    expect((placed as ShellExpansionError).reason).toBe(err.reason);
  });

  it('quotes the word in the message the way Go does', () => {
    expect(failure('\t\u00a0\x01${').message).toBe('failed to process "\\t\\u00a0\\x01${": syntax error: missing \'}\'');
  });

  it('rejects absurd nesting and sizes with a typed error instead of exhausting the stack or memory', () => {
    const deep = '${X:-"'.repeat(MAX_NESTING + 1) + 'v' + '"}'.repeat(MAX_NESTING + 1);
    expect(failure(deep).reason).toMatch(/nested/);
    const ok = '${X:-"'.repeat(MAX_NESTING) + 'v' + '"}'.repeat(MAX_NESTING);
    expect(word(ok)).toBe('v');
    expect(failure('${A//?/${A//?/${A//?/x}}}', { A: 'a'.repeat(300) }).reason).toBe('expansion result too large');
  });
});

describe('ShellLex: robustness', () => {
  it('throws nothing but ShellExpansionError on random input', () => {
    let seed = 42;
    const rnd = (n: number): number => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed % n;
    };
    const atoms = ['$', '{', '}', ':', '-', '+', '?', '#', '%', '/', '\\', '`', "'", '"', '*', '<', ' ', '\n', 'a', 'X', '0', '@', '[', '안', '👽', '\uFEFF', '\uD800', '${X', '${Y', '\\}', '\\*'];
    const env = envFromRecord({ X: 'a*b\\?c\n$0', Y: '' });
    const lexers = [lex, withOptions({ rawQuotes: true, rawEscapes: true }), withOptions({ skipUnsetEnv: true, skipProcessQuotes: true }, '`')];
    for (let i = 0; i < 20000; i++) {
      let input = '';
      for (let n = rnd(16); n > 0; n--) input += atoms[rnd(atoms.length)];
      const lexer = lexers[i % lexers.length]!;
      try {
        lexer.processWordWithMatches(input, env);
      } catch (err) {
        if (!(err instanceof ShellExpansionError)) throw new Error(`${JSON.stringify(input)} threw ${String(err)}`);
      }
    }
  });
});
