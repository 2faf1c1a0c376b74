import { describe, expect, it } from 'vitest';
import { DockerfileError } from '../../errors.js';
import { newNode } from './ast.js';
import {
  DirectiveParser,
  chompHeredocContent,
  detectSyntax,
  dump,
  extractBuilderFlags,
  goQuote,
  goToLower,
  heredocsFromLine,
  lexWords,
  matchDirectiveLine,
  parse,
  parseDirective,
  parseHeredocWord,
  parseJSONArray,
  parseNameVal,
  parseWords,
  splitCommand,
  trimContinuation,
  trimSpace,
} from './index.js';

describe('Go string semantics', () => {
  it('trims Unicode white space like strings.TrimSpace (U+0085 yes, U+FEFF no)', () => {
    expect(trimSpace('\u0085\u00a0 a \u3000')).toBe('a');
    expect(trimSpace('\ufeffa')).toBe('\ufeffa');
  });

  it('lower-cases rune by rune like strings.ToLower', () => {
    expect(goToLower('RUN')).toBe('run');
    expect(goToLower('\u0130X')).toBe('ix');
    expect(goToLower('ΣΣ')).toBe('σσ');
    expect(goToLower('HEALTHCHEC\u212a')).toBe('healthcheck');
  });

  it('quotes like strconv.Quote', () => {
    expect(goQuote('a"b\\c')).toBe('"a\\"b\\\\c"');
    expect(goQuote('\x00\x1b\t\n\r\v\f\b\x07\x7f')).toBe('"\\x00\\x1b\\t\\n\\r\\v\\f\\b\\a\\x7f"');
    expect(goQuote('\u0085\u00a0\u00ad\u2028')).toBe('"\\u0085\\u00a0\\u00ad\\u2028"');
    expect(goQuote('♥ 한 😀 \u{e0001}')).toBe('"♥ 한 😀 \\U000e0001"');
    expect(goQuote('\ud800x')).toBe('"\\xed\\xa0\\x80x"');
  });
});

describe('splitting instruction lines', () => {
  it('splits keyword, flags and arguments', () => {
    expect(splitCommand('  RUN \t --mount=type=cache,target=/x --network=none  echo hi  ')).toEqual({
      cmd: 'RUN',
      flags: ['--mount=type=cache,target=/x', '--network=none'],
      args: 'echo hi',
    });
    expect(splitCommand('RUN\u000becho')).toEqual({ cmd: 'RUN', flags: [], args: 'echo' });
    expect(splitCommand('RUN\u00a0echo')).toEqual({ cmd: 'RUN\u00a0echo', flags: [], args: '' });
  });

  it('processes quotes and escapes in flags; `--` ends them', () => {
    expect(extractBuilderFlags('--a="b c" --d=\'e\' --f=g\\ h x')).toEqual({ flags: ['--a=b c', "--d=e", '--f=g h'], rest: 'x' });
    expect(extractBuilderFlags('--a -- --b x')).toEqual({ flags: ['--a'], rest: ' --b x' });
    expect(extractBuilderFlags('--a --')).toEqual({ flags: ['--a'], rest: '' });
    expect(extractBuilderFlags('--a=`` x', '`')).toEqual({ flags: ['--a=`'], rest: 'x' });
    expect(extractBuilderFlags('--a=\\')).toEqual({ flags: ['--a='], rest: '' });
    expect(extractBuilderFlags('-a x')).toEqual({ flags: [], rest: '-a x' });
  });

  it('reads flags byte by byte, as BuildKit does', () => {
    // Every byte of a multi-byte character becomes one Latin-1 character of the flag...
    expect(extractBuilderFlags('--x=é y').flags).toEqual(['--x=\u00c3\u00a9']);
    // ...and a 0xA0 byte (the second byte of `à`) ends the flag word.
    expect(extractBuilderFlags('--x=àb y')).toEqual({ flags: ['--x=\u00c3'], rest: 'b y' });
  });

  it('splits words keeping quotes and escapes (parseWords)', () => {
    expect(parseWords('a "b c" \'d e\' f\\ g h\\')).toEqual(['a', '"b c"', "'d e'", 'f\\ g', 'h']);
    expect(parseWords('a "b\\"c" \'d\\\'')).toEqual(['a', '"b\\"c"', "'d\\'"]);
    expect(parseWords('a \\')).toEqual(['a']);
    expect(parseWords('"a\\')).toEqual(['"a']);
    expect(parseWords('a\u00a0b 😀')).toEqual(['a', 'b', '😀']);
    expect(parseWords('a`  b', '`')).toEqual(['a` ', 'b']);
  });

  it('builds ENV/LABEL name/value triples', () => {
    expect(parseNameVal('a=1 b="x y"', 'ENV').map((n) => n.value)).toEqual(['a', '1', '=', 'b', '"x y"', '=']);
    expect(parseNameVal('a  b  c', 'LABEL').map((n) => n.value)).toEqual(['a', 'b  c', '']);
    expect(parseNameVal('', 'ENV')).toEqual([]);
    expect(() => parseNameVal('a', 'ENV')).toThrow('ENV must have two arguments');
    expect(() => parseNameVal('a=b c', 'ENV')).toThrow(DockerfileError);
  });

  it('recognizes a continuation like BuildKit\'s regular expression', () => {
    expect(trimContinuation('a \\ \t', '\\')).toEqual(['a ', false]);
    expect(trimContinuation('\\', '\\')).toEqual(['', false]);
    expect(trimContinuation('a\\\\', '\\')).toEqual(['a\\\\', true]);
    expect(trimContinuation('a\\\r', '\\')).toEqual(['a\\\r', true]);
    expect(trimContinuation('a `', '`')).toEqual(['a ', false]);
    expect(trimContinuation('a \\', '`')).toEqual(['a \\', true]);
  });
});

describe('JSON arrays (Go encoding/json semantics)', () => {
  it('parses arrays of strings and falls back to shell form otherwise', () => {
    expect(parseJSONArray(' ["a", "\\u00e9"] ')).toEqual(['a', 'é']);
    expect(parseJSONArray('[]')).toEqual([]);
    expect(parseJSONArray("['a']")).toBeUndefined();
    expect(parseJSONArray('["a"] x')).toBeUndefined();
    expect(parseJSONArray('x ["a"]')).toBeUndefined();
    expect(() => parseJSONArray('["a", null]')).toThrow(DockerfileError);
  });

  it('treats float64 overflow and nesting over 10000 levels as not JSON', () => {
    expect(parseJSONArray('["a", 1e400]')).toBeUndefined();
    expect(() => parseJSONArray('["a", 1e-400]')).toThrow(DockerfileError);
    expect(parseJSONArray('['.repeat(10001) + ']'.repeat(10001))).toBeUndefined();
    expect(() => parseJSONArray('['.repeat(10000) + ']'.repeat(10000))).toThrow(DockerfileError);
  });

  it('decodes an unpaired surrogate escape to U+FFFD, as Go does', () => {
    expect(parseJSONArray('["\\ud800x", "\\ud83d\\ude00"]')).toEqual(['\ufffdx', '😀']);
  });
});

describe('directives', () => {
  it('matches `name = value` with Go regexp semantics', () => {
    expect(matchDirectiveLine('escape = `  ')).toEqual({ name: 'escape', value: '`' });
    expect(matchDirectiveLine('syntax=a b\t')).toEqual({ name: 'syntax', value: 'a b' });
    expect(matchDirectiveLine('x=  ')).toEqual({ name: 'x', value: ' ' });
    expect(matchDirectiveLine('x=\u000b')).toEqual({ name: 'x', value: '\u000b' });
    expect(matchDirectiveLine('x=')).toBeUndefined();
    expect(matchDirectiveLine('1x=y')).toBeUndefined();
    expect(matchDirectiveLine('a-b=y')).toBeUndefined();
  });

  it('stops at the first line that is not a known directive', () => {
    expect(new DirectiveParser().parseAll('# syntax=a\n#check=b\n# foo=c\n# escape=`').map((d) => [d.name, d.value, d.line])).toEqual([
      ['syntax', 'a', 1],
      ['check', 'b', 2],
    ]);
    expect(() => new DirectiveParser().parseAll('# syntax=a\n# SYNTAX=b')).toThrow('only one syntax parser directive can be used');
  });

  it('detects syntax in #, // and JSON form, after a shebang; check only in # form', () => {
    expect(detectSyntax('# syntax=a b\n')).toEqual({ ref: 'a', cmdline: 'a b', line: 1 });
    expect(detectSyntax('#!/bin/sh\n//syntax=x')).toEqual({ ref: 'x', cmdline: 'x', line: 2 });
    expect(detectSyntax(' {"syntax": "j"} ')).toEqual({ ref: 'j', cmdline: 'j', line: 0 });
    expect(detectSyntax('{"syntax": 1}')).toBeUndefined();
    expect(detectSyntax('# syntax=a\n# syntax=b\n')?.ref).toBe('a');
    expect(parseDirective('check', '//check=x')).toBeUndefined();
  });
});

describe('heredoc words', () => {
  it('parses delimiters, file descriptors and expansion', () => {
    expect(parseHeredocWord('12<<-"E"O\'F\'')).toEqual({ name: 'EOF', fileDescriptor: 12, expand: false, chomp: true, content: '' });
    expect(parseHeredocWord('99999999999999999999<<EOF')?.fileDescriptor).toBe(18446744073709551615);
    expect(parseHeredocWord('<<E\\"F')).toMatchObject({ name: 'E"F', expand: true });
    expect(parseHeredocWord('<<$A${B}')).toMatchObject({ name: '$A${B}', expand: true });
    expect(parseHeredocWord('<<\ufeffEOF')?.name).toBe('EOF');
    expect(() => parseHeredocWord("<<'EOF")).toThrow(DockerfileError);
  });

  it('finds heredocs as BuildKit\'s lexer splits the line', () => {
    const names = (line: string) => heredocsFromLine(line).map((h) => h.name);
    expect(names('RUN <<A cat <<-B > x "<<C" \'<<D\' 5<<E')).toEqual(['A', 'B', 'E']);
    expect(names('RUN <<  EOF')).toEqual(['EOF']);
    // A `${v:-w}` clears the word collected so far (BuildKit's shared word buffer).
    expect(names('RUN <<EOF${x:-y}')).toEqual([]);
    expect(lexWords('RUN a${x:-b}c', { rawQuotes: true, rawEscapes: true })).toEqual(['RUN', '${x:-b}c']);
    expect(names('RUN <<EOF ${')).toEqual([]);
  });

  it('lexes words without expansion; errors say what failed', () => {
    expect(lexWords('a "b c"\'d\' $x ${y:-"1 2"} \\e', { rawQuotes: false, rawEscapes: false })).toEqual([
      'a',
      'b cd',
      '$x',
      '${y:-1',
      '2}',
      'e',
    ]);
    expect(lexWords('"a\\b" \\c', { rawQuotes: true, rawEscapes: true })).toEqual(['"a\\\\b"', '\\c']);
    expect(() => lexWords('${a', { rawQuotes: false, rawEscapes: false })).toThrow(
      'failed to process "${a": unsupported modifier (\ufffd) in substitution',
    );
    expect(() => lexWords('${a:-x', { rawQuotes: false, rawEscapes: false })).toThrow("syntax error: missing '}'");
    expect(() => lexWords('${}', { rawQuotes: false, rawEscapes: false })).toThrow('bad substitution');
  });

  it('handles deeply nested ${...} in linear time without overflowing the stack', () => {
    const n = 30000;
    const start = performance.now();
    expect(heredocsFromLine('RUN <<EOF ' + '${a:-'.repeat(n) + '}'.repeat(n))).toHaveLength(1);
    expect(heredocsFromLine('RUN <<EOF ' + '${a:-'.repeat(n))).toEqual([]);
    expect(performance.now() - start).toBeLessThan(10000);
  });

  it('chomps leading tabs of every line', () => {
    expect(chompHeredocContent('\t\ta\n \tb\n\tc')).toBe('a\n \tb\nc');
  });
});

describe('dump', () => {
  it('trims like strings.TrimSpace around every level', () => {
    expect(dump(newNode({ value: ' X ' }))).toBe('x');
    expect(dump(newNode({ value: '  ', next: [newNode({ value: 'a' })] }))).toBe('"a"');
    expect(dump(newNode({ children: [newNode({ value: 'A' }), newNode({ value: 'B', flags: ['--f'] })] }))).toBe(
      '(a)\n(b ["--f"])',
    );
    expect(dump(newNode({ value: 'X', next: [newNode({ children: [newNode({ value: 'Y' })] }), newNode({ value: '' })] }))).toBe(
      'x (y) ""',
    );
  });
});

describe('robustness', () => {
  it('throws nothing but DockerfileError on mutated input', () => {
    const seeds = [
      '# escape=`\nFROM a AS b\nRUN --mount=type=cache,target=/x `\n  echo "hi" \\\n\nCOPY <<EOF <<-\'X\' /d\nbody\nEOF\n\tX\n',
      'FROM x\nONBUILD RUN <<EOF\n${a:-"b"}\nEOF\nENV a=b c="d e"\nLABEL x y\nCMD ["a", 1]\nHEALTHCHECK --interval=1s CMD ["x"]\n',
    ];
    const pieces = ['\\', '`', '\n', '\r', ' ', '"', "'", '<<', '<<-', 'EOF', '${', '}', '#', '[', ']', '--', '=', '\u00a0', 'é', '😀', '\ufeff', '\ud800', 'ONBUILD ', 'ENV ', '3<<'];
    let state = 42;
    const rnd = (n: number) => {
      state = (state * 1103515245 + 12345) & 0x7fffffff;
      return state % n;
    };
    for (let i = 0; i < 3000; i++) {
      let s = seeds[rnd(seeds.length)]!;
      for (let k = 1 + rnd(6); k > 0; k--) {
        const at = rnd(s.length + 1);
        s = rnd(2) ? s.slice(0, at) + pieces[rnd(pieces.length)] + s.slice(at) : s.slice(0, at) + s.slice(at + rnd(10));
      }
      try {
        dump(parse(s).ast);
      } catch (err) {
        if (!(err instanceof DockerfileError)) throw new Error(`${String(err)} for ${JSON.stringify(s)}`);
      }
    }
  });
});
