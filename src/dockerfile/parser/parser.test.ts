import { DockerfileParser } from 'dockerfile-ast';
import { describe, expect, it } from 'vitest';
import { DockerfileError } from '../../errors.js';
import { dump, parse } from './index.js';

/** `dump(ast)` of a Dockerfile, one line per instruction. */
const d = (text: string): string => dump(parse(text).ast);

function parseError(text: string, file?: string): DockerfileError {
  try {
    parse(text, file === undefined ? {} : { file });
  } catch (err) {
    expect(err).toBeInstanceOf(DockerfileError);
    return err as DockerfileError;
  }
  throw new Error('expected a DockerfileError');
}

describe('parse: structure and dump', () => {
  it('builds one child per instruction with the keyword as written', () => {
    const { ast } = parse('from alpine\nRun echo hi\n');
    expect(ast.children.map((c) => c.value)).toEqual(['from', 'Run']);
    expect(d('from alpine\nRun echo hi\n')).toBe('(from "alpine")\n(run "echo hi")');
  });

  it('records original text, flags and JSON attribute', () => {
    const [, copy, cmd] = parse('FROM x\nCOPY --chown=a:b  src dst  \nCMD ["a", "b"]\n').ast.children;
    expect(copy!.original).toBe('COPY --chown=a:b  src dst  ');
    expect(copy!.flags).toEqual(['--chown=a:b']);
    expect(copy!.next.map((n) => n.value)).toEqual(['src', 'dst']);
    expect(cmd!.attributes).toEqual({ json: true });
    expect(d('FROM x\nCMD ["a", "b"]')).toBe('(from "x")\n(cmd "a" "b")');
  });

  it('parses ONBUILD triggers as a child of the argument node', () => {
    const onbuild = parse('FROM x\nONBUILD COPY --from=a . /\n').ast.children[1]!;
    expect(onbuild.next).toHaveLength(1);
    expect(onbuild.next[0]!.value).toBe('');
    const trigger = onbuild.next[0]!.children[0]!;
    expect(trigger.value).toBe('COPY');
    expect(trigger.flags).toEqual(['--from=a']);
    expect(trigger.original).toBe('COPY --from=a . /');
    expect(d('FROM x\nONBUILD COPY --from=a . /\nONBUILD\n')).toBe(
      '(from "x")\n(onbuild (copy ["--from=a"] "." "/"))\n(onbuild)',
    );
  });

  it('keeps unknown instructions with one empty argument', () => {
    expect(d('FROM x\nFOO bar baz\n')).toBe('(from "x")\n(foo "")');
  });

  it('quotes values like Go strconv.Quote', () => {
    expect(d('FROM x\nRUN echo "\u00a0é\u0007\u007f😀"\n')).toBe('(from "x")\n(run "echo \\"\\u00a0é\\a\\x7f😀\\"")');
  });

  it('HEALTHCHECK takes a type word and then CMD-style arguments', () => {
    expect(d('FROM x\nHEALTHCHECK CMD ["a"]\nHEALTHCHECK NONE\n')).toBe(
      '(from "x")\n(healthcheck "CMD" "a")\n(healthcheck "NONE")',
    );
  });

  it('nests thousands of ONBUILDs without overflowing the stack', () => {
    const depth = 20000;
    const text = 'FROM x\n' + Array.from({ length: depth / 1000 }, () => 'ONBUILD '.repeat(1000)).join('\\\n') + 'RUN a\n';
    const out = d(text);
    expect(out.startsWith('(from "x")\n(onbuild (onbuild (')).toBe(true);
    expect(out.endsWith(' (run "a")' + ')'.repeat(depth))).toBe(true);
  });
});

describe('parse: lines, continuations and comments', () => {
  it('joins continuation lines verbatim and keeps blanks before the escape token', () => {
    expect(d('FROM x\nRUN a  \\\n  b\n')).toBe('(from "x")\n(run "a    b")');
  });

  it('keeps the blanks of a continuation line holding only blanks and the escape token', () => {
    expect(d('FROM x\nRUN set -eux; \\\n\t\\\n\tfoo\n')).toBe('(from "x")\n(run "set -eux; \\t\\tfoo")');
  });

  it('does not continue after an escaped escape token', () => {
    expect(d('FROM x\nENV C a\\\\\nENV D b\n')).toBe('(from "x")\n(env "C" "a\\\\\\\\" "")\n(env "D" "b" "")');
  });

  it('skips comment lines and warns about empty lines inside a continuation', () => {
    const r = parse('FROM x\nRUN a \\\n# comment\n  # indented\n\nb\n');
    expect(dump(r.ast)).toBe('(from "x")\n(run "a b")');
    expect(r.warnings).toEqual([
      {
        short: 'Empty continuation line found in: RUN a b',
        detail: 'Empty continuation lines will become errors in a future release',
        url: 'https://docs.docker.com/go/dockerfile/rule/no-empty-continuation/',
        startLine: 6,
        endLine: 6,
      },
    ]);
  });

  it('treats only LF as a line break; CR elsewhere is a blank inside the line', () => {
    expect(d('FROM a\rRUN b\r\n')).toBe('(from "a" "RUN" "b")');
    expect(parse('FROM a\r\r\nRUN b').ast.children.map((c) => c.original)).toEqual(['FROM a', 'RUN b']);
  });

  it('splits the keyword on \\v and \\f and treats Unicode white space as indentation', () => {
    expect(d('FROM x\nRUN\u000becho\n\u00a0RUN b\n')).toBe('(from "x")\n(run "echo")\n(run "b")');
    expect(d('FROM x\n\u3000# comment\nRUN b\n')).toBe('(from "x")\n(run "b")');
  });

  it('drops a BOM on the first line only', () => {
    expect(d('\uFEFFFROM x\n')).toBe('(from "x")');
    expect(d('FROM x\n\uFEFFRUN y\n')).toBe('(from "x")\n(\ufeffrun "")');
  });

  it('gives every instruction its first and last line, continuations and heredocs included', () => {
    const { ast } = parse('\n# c\nFROM x\nRUN a \\\n\n  b\nCOPY <<EOF /f\nhi\nEOF\n\n');
    expect([ast.startLine, ast.endLine]).toEqual([3, 9]);
    expect(ast.children.map((c) => [c.startLine, c.endLine])).toEqual([
      [3, 3],
      [4, 6],
      [7, 9],
    ]);
  });

  it('collects the comments directly above an instruction (blank lines do not separate, a bare # does)', () => {
    const { ast } = parse('# one\n\n# two\nFROM x\n# a\n#\n# b\nRUN y\nRUN z\n');
    expect(ast.children.map((c) => c.prevComment)).toEqual([['one', 'two'], ['b'], []]);
  });

  it('records an indented comment from its second byte on, as BuildKit does', () => {
    // BuildKit strips the first byte of the raw line, not the `#`, so the indentation's first
    // character goes and the `#` stays.
    expect(parse('  # note\nFROM x\n').ast.children[0]!.prevComment).toEqual(['# note']);
  });

  it('a line with only the escape token starts a continuation', () => {
    expect(d('FROM x\n\\\nRUN a\n')).toBe('(from "x")\n(run "a")');
  });
});

describe('parse: directives', () => {
  it('switches the escape token with # escape=`', () => {
    const r = parse('# escape=`\nFROM x\nRUN a `\n  b \\\n');
    expect(r.directives.escapeToken).toBe('`');
    expect(r.directives.lines.escape).toBe(1);
    expect(dump(r.ast)).toBe('(from "x")\n(run "a   b \\\\")');
  });

  it('reads directives only at the very top, after a BOM, before anything else', () => {
    expect(parse('\uFEFF# escape=`\nFROM x\n').directives.escapeToken).toBe('`');
    expect(parse('\n# escape=`\nFROM x\n').directives.escapeToken).toBe('\\');
    expect(parse('# comment\n# escape=`\nFROM x\n').directives.escapeToken).toBe('\\');
    expect(parse('# key=value\n# escape=`\nFROM x\n').directives.escapeToken).toBe('\\');
    expect(parse('# syntax=a\n# ESCAPE = `\nFROM x\n').directives.escapeToken).toBe('`');
  });

  it('does not count directive lines as comments', () => {
    expect(parse('# syntax=a\n# escape=`\n# doc\nFROM x\n').ast.children[0]!.prevComment).toEqual(['doc']);
  });

  it('reports syntax and check as BuildKit reads them', () => {
    const r = parse('#!/bin/sh\n# syntax = docker/dockerfile:1 // opts\n# check=skip=all;error=true\nFROM x\n');
    expect(r.directives.syntax).toBe('docker/dockerfile:1');
    expect(r.directives.check).toBe('skip=all;error=true');
    expect(r.directives.lines).toEqual({ syntax: 2, check: 3 });
    expect(r.directives.raw).toEqual({ syntax: 'docker/dockerfile:1 // opts', check: 'skip=all;error=true' });
  });

  it('rejects a repeated directive and an invalid escape token, at their line', () => {
    const dup = parseError('# escape=\\\n# Escape=`\nFROM x\n');
    expect(dup.detail).toBe('only one escape parser directive can be used');
    expect(dup.location?.line).toBe(2);
    const bad = parseError('# syntax=a\n# escape=x\nFROM x\n');
    expect(bad.detail).toBe("invalid escape token 'x' does not match ` or \\");
    expect(bad.message).toBe("Dockerfile:2: invalid escape token 'x' does not match ` or \\");
  });
});

describe('parse: heredocs', () => {
  it('attaches bodies to RUN/COPY/ADD, several per line, raw (not chomped)', () => {
    const r = parse('FROM x\nCOPY <<A <<-"B" /d\na1\n\tb1\n\tA\nA\n\tB\nRUN 3<<EOF cat\r\nhi\r\nEOF\r\n');
    const [, copy, run] = r.ast.children;
    expect(copy!.heredocs).toEqual([
      { name: 'A', fileDescriptor: 0, expand: true, chomp: false, content: 'a1\n\tb1\n\tA\n' },
      { name: 'B', fileDescriptor: 0, expand: false, chomp: true, content: '' },
    ]);
    expect(run!.heredocs).toEqual([{ name: 'EOF', fileDescriptor: 3, expand: true, chomp: false, content: 'hi\r\n' }]);
    expect([run!.startLine, run!.endLine]).toEqual([8, 10]);
  });

  it('supports heredocs under ONBUILD, on the ONBUILD node', () => {
    const onbuild = parse('FROM x\nONBUILD RUN <<EOF\necho\nEOF\n').ast.children[1]!;
    expect(onbuild.heredocs.map((h) => h.content)).toEqual(['echo\n']);
  });

  it('ignores heredoc syntax in JSON form, inside quotes and on other instructions', () => {
    const r = parse('FROM x\nRUN ["<<EOF"]\nRUN "<<EOF"\nUSER <<EOF\nEOF\n');
    expect(r.ast.children.map((c) => c.heredocs.length)).toEqual([0, 0, 0, 0, 0]);
  });

  it('does not treat `<<- EOF` (space after the dash) as a heredoc, like BuildKit', () => {
    expect(parse('FROM x\nRUN <<- EOF\nEOF\n').ast.children[1]!.heredocs).toEqual([]);
  });

  it('fails on an unterminated heredoc, at the instruction', () => {
    const e = parseError('FROM x\nRUN <<EOF\nhello\n');
    expect(e.detail).toBe('unterminated heredoc');
    expect(e.location).toEqual({ file: 'Dockerfile', line: 2, endLine: 3 });
  });

  it('ignores heredocs on a line the shell lexer cannot split (an unterminated quote)', () => {
    expect(parse('FROM x\nRUN <<EOF "a\nEOF\n').ast.children.map((c) => c.heredocs.length)).toEqual([0, 0, 0]);
  });
});

describe('parse: errors', () => {
  it('rejects files without instructions', () => {
    expect(parseError('').detail).toBe('file with no instructions');
    const comments = parseError('# a\n# b\n\n', 'x/Dockerfile.dev');
    expect(comments.message).toBe('x/Dockerfile.dev:3: file with no instructions');
  });

  it('rejects ENV/LABEL without value and bad name=value lists, at the instruction lines', () => {
    const e = parseError('FROM x\n\nENV \\\n  PATH\n');
    expect(e.detail).toBe('ENV must have two arguments');
    expect(e.location).toEqual({ file: 'Dockerfile', line: 3, endLine: 4 });
    expect(parseError('FROM x\nLABEL a=b c\n').detail).toBe(
      'Syntax error - can\'t find = in "c". Must be of the form: name=value',
    );
  });

  it('rejects JSON arrays of non-strings, also nested in ONBUILD', () => {
    expect(parseError('FROM x\nCMD ["a", 1]\n').detail).toBe(
      'when using JSON array syntax, arrays must be comprised of strings only',
    );
    expect(parseError('FROM x\nONBUILD RUN [[]]\n').location?.line).toBe(2);
  });

  it('does not check argument counts (that is the instruction layer)', () => {
    expect(d('FROM\nCOPY\n')).toBe('(from)\n(copy)');
  });

  it('rejects a line over 65535 bytes, counting UTF-8 bytes, at that line', () => {
    expect(() => parse('FROM x\nRUN ' + 'a'.repeat(65531) + '\n')).not.toThrow();
    const e = parseError('FROM x\nRUN ' + 'a'.repeat(65532) + '\n');
    expect(e.detail).toBe('dockerfile line greater than max allowed size of 65535');
    expect(e.location?.line).toBe(2);
    expect(() => parse('FROM x\nRUN ' + 'é'.repeat(32765) + 'a')).not.toThrow();
    expect(parseError('FROM x\nRUN ' + 'é'.repeat(32766)).location?.line).toBe(2);
  });
});

/**
 * Cases where dockerfile-ast (which kiln does not use for parsing) gives a different answer than
 * BuildKit; each test shows dockerfile-ast's answer next to ours, which is BuildKit's. If one of
 * these starts failing because dockerfile-ast changed, the reason given in the parser's comments
 * for not using it there may no longer hold.
 */
describe('dockerfile-ast divergences', () => {
  const theirs = (text: string) => DockerfileParser.parse(text);

  it('lone CR: a line break for dockerfile-ast, a blank for BuildKit', () => {
    const text = 'FROM a\rRUN b\n';
    expect(theirs(text).getInstructions().map((i) => i.getKeyword())).toEqual(['FROM', 'RUN']);
    expect(parse(text).ast.children.map((c) => c.value)).toEqual(['FROM']);
  });

  it('escaped escape token at the end: dockerfile-ast continues the line, BuildKit does not', () => {
    const text = 'FROM x\nENV C a\\\\\nENV D b\n';
    expect(theirs(text).getInstructions()).toHaveLength(2);
    expect(parse(text).ast.children).toHaveLength(3);
  });

  it('continuation line of blanks and the escape token: dockerfile-ast drops the blanks', () => {
    const text = 'FROM x\nRUN a \\\n\t\\\n\tb\n';
    expect(theirs(text).getInstructions()[1]!.getArgumentsContent()).toBe('a \tb');
    expect(parse(text).ast.children[1]!.next[0]!.value).toBe('a \t\tb');
  });

  it('Unicode white space before # or a keyword, \\v after a keyword', () => {
    const nbsp = 'FROM x\n\u00a0# comment\nRUN y\n';
    expect(theirs(nbsp).getInstructions().map((i) => i.getInstruction())).toEqual(['FROM', '\u00a0#', 'RUN']);
    expect(parse(nbsp).ast.children.map((c) => c.value)).toEqual(['FROM', 'RUN']);
    const vt = 'FROM x\nRUN\u000becho hi\n';
    expect(theirs(vt).getInstructions()[1]!.getInstruction()).toBe('RUN\u000becho');
    expect(parse(vt).ast.children[1]!.value).toBe('RUN');
  });

  it('directives: unknown names, values with blanks, invalid and repeated escape', () => {
    const unknown = '# key=v\n# escape=`\nFROM x\n';
    expect(theirs(unknown).getEscapeCharacter()).toBe('`');
    expect(parse(unknown).directives.escapeToken).toBe('\\');
    const value = '# syntax=img // opts\nFROM x\n';
    expect(theirs(value).getDirectives()[0]!.getValue()).toBe('img');
    expect(parse(value).directives.raw?.syntax).toBe('img // opts');
    expect(theirs('# escape=x\nFROM x\n').getEscapeCharacter()).toBe('\\');
    expect(() => parse('# escape=x\nFROM x\n')).toThrow(DockerfileError);
    expect(theirs('# escape=\\\n# escape=`\nFROM x\n').getDirectives()).toHaveLength(2);
    expect(() => parse('# escape=\\\n# escape=`\nFROM x\n')).toThrow(DockerfileError);
  });

  it('heredocs: file descriptor prefix, quoted parts of the delimiter, per-heredoc <<-', () => {
    const fd = 'FROM x\nRUN 3<<EOF cat\nhello\nEOF\n';
    expect(theirs(fd).getInstructions()).toHaveLength(4);
    expect(parse(fd).ast.children).toHaveLength(2);
    const quoted = "FROM x\nRUN <<eo'f'\nhello\neof\n";
    expect((theirs(quoted).getInstructions()[1] as unknown as { getHeredocs(): { getName(): string }[] }).getHeredocs()[0]!.getName()).toBe("eo'f'");
    expect(parse(quoted).ast.children[1]!.heredocs[0]!.name).toBe('eof');
    // Only A was declared with <<-, so "\tB" does not end B.
    const chomp = 'FROM x\nCOPY <<-A <<B /d\n\tA\n\tB\nB\n';
    expect(theirs(chomp).getInstructions()).toHaveLength(3);
    expect(parse(chomp).ast.children[1]!.heredocs.map((h) => h.content)).toEqual(['', '\tB\n']);
  });

  it('unterminated heredoc: accepted by dockerfile-ast, an error in BuildKit', () => {
    const text = 'FROM x\nRUN <<EOF\nhello\n';
    expect(theirs(text).getInstructions()).toHaveLength(2);
    expect(() => parse(text)).toThrow(DockerfileError);
  });

  it('flags: quoted values, the `--` terminator, flags on CMD', () => {
    type WithFlags = { getFlags(): { toString(): string }[]; getArguments(): { getValue(): string }[] };
    const text = 'FROM x\nCOPY --a="b c" x y\nCOPY -- x y\nCMD --doit x\n';
    const [, quoted, dashes, cmd] = theirs(text).getInstructions() as unknown as WithFlags[];
    expect(quoted!.getFlags().map(String)).toEqual(['--a="b']);
    expect(quoted!.getArguments().map((a) => a.getValue())).toEqual(['c"', 'x', 'y']);
    expect(dashes!.getFlags().map(String)).toEqual(['--']);
    expect(cmd!.getArguments().map((a) => a.getValue())).toEqual(['--doit', 'x']);
    const ours = parse(text).ast.children;
    expect(ours.slice(1).map((c) => c.flags)).toEqual([['--a=b c'], [], ['--doit']]);
    expect(ours.slice(1).map((c) => c.next.map((n) => n.value))).toEqual([['x', 'y'], ['x', 'y'], ['x']]);
  });
});
