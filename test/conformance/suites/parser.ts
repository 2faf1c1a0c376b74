/**
 * Conformance of the Dockerfile parser with BuildKit's parser test data
 * (shared/conformance/buildkit-parser) and the real-world Dockerfiles.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { DockerfileError } from '../../../src/errors.js';
import {
  DirectiveParser,
  chompHeredocContent,
  detectSyntax,
  dump,
  heredocsFromLine,
  parse,
  parseDirective,
  parseHeredocWord,
  parseJSONArray,
  parseNameVal,
  parseWords,
  type Heredoc,
  type Node,
} from '../../../src/dockerfile/parser/index.js';
import { check, corpusPath, expectEqual, readCorpusJSON, type CaseResult, type Suite } from '../harness.js';

type Tables = any;

function tables(): Tables {
  return readCorpusJSON('buildkit-parser', 'parser-tables.json');
}

function dirs(...parts: string[]): string[] {
  return readdirSync(corpusPath(...parts), { withFileTypes: true })
    .filter((d) => d.isDirectory())
    .map((d) => d.name)
    .sort();
}

function read(...parts: string[]): string {
  return readFileSync(corpusPath(...parts), 'utf8');
}

/** Expects `body` to throw a DockerfileError; returns a problem description otherwise. */
function expectDockerfileError(body: () => unknown, contains?: string): string | undefined {
  try {
    body();
  } catch (err) {
    if (!(err instanceof DockerfileError)) return `threw a non-DockerfileError: ${String(err)}`;
    if (contains !== undefined && !err.detail.includes(contains)) {
      return `error ${JSON.stringify(err.detail)} does not contain ${JSON.stringify(contains)}`;
    }
    return undefined;
  }
  return 'expected a DockerfileError, parsed fine';
}

function goHeredoc(h: Heredoc) {
  return { Name: h.name, FileDescriptor: h.fileDescriptor, Expand: h.expand, Chomp: h.chomp, Content: h.content };
}

const testfiles: Suite = {
  name: 'buildkit-parser/testfiles',
  run: () =>
    dirs('buildkit-parser', 'testfiles').map((c) =>
      check(c, () => {
        const df = read('buildkit-parser', 'testfiles', c, 'Dockerfile');
        const expected = read('buildkit-parser', 'testfiles', c, 'result');
        const got = dump(parse(df).ast) + '\n';
        return got === expected ? undefined : `dump differs:\n--- expected\n${expected}--- got\n${got}`;
      }),
    ),
};

const negative: Suite = {
  name: 'buildkit-parser/testfiles-negative',
  run: () =>
    dirs('buildkit-parser', 'testfiles-negative').map((c) =>
      check(c, () => expectDockerfileError(() => parse(read('buildkit-parser', 'testfiles-negative', c, 'Dockerfile')))),
    ),
};

function lineNumberCases(t: Tables): CaseResult[] {
  const spec = t.lineNumbers;
  const df = read('buildkit-parser', spec.file);
  const out: CaseResult[] = [
    check('root', () => {
      const { ast } = parse(df);
      return expectEqual([ast.startLine, ast.endLine], spec.root, 'root lines');
    }),
    check('child count', () => expectEqual(parse(df).ast.children.length, spec.children.length, 'children')),
  ];
  spec.children.forEach((lines: number[], i: number) => {
    out.push(
      check(`child ${i}`, () => {
        const c = parse(df).ast.children[i];
        return c ? expectEqual([c.startLine, c.endLine], lines, `child ${i} lines`) : 'missing child';
      }),
    );
  });
  return out;
}

const testfileLine: Suite = {
  name: 'buildkit-parser/testfile-line',
  run: () => lineNumberCases(tables()),
};

function chainValues(nodes: Node[]): string[] {
  return nodes.map((n) => n.value);
}

function parserTableCases(t: Tables): CaseResult[] {
  const out: CaseResult[] = [];

  // heredocExtraction: children[i+1].heredocs (null = none).
  {
    const spec = t.heredocExtraction;
    spec.expected.forEach((exp: unknown[] | null, i: number) => {
      out.push(
        check(`heredocExtraction/${i}`, () => {
          const child = parse(spec.dockerfile).ast.children[i + 1];
          if (!child) return 'missing instruction';
          const got = child.heredocs.length ? child.heredocs.map(goHeredoc) : null;
          return expectEqual(got, exp, `heredocs of ${JSON.stringify(child.original)}`);
        }),
      );
    });
  }

  // heredocJSONForm: children 1..3 have no heredocs.
  for (const i of [1, 2, 3]) {
    out.push(
      check(`heredocJSONForm/${i}`, () => {
        const child = parse(t.heredocJSONForm.dockerfile).ast.children[i];
        if (!child) return 'missing instruction';
        return expectEqual(child.heredocs, [], 'heredocs');
      }),
    );
  }

  // parseHeredocWord.
  for (const w of t.parseHeredocWord.valid as string[]) {
    out.push(check(`parseHeredocWord/valid/${w}`, () => expectEqual(parseHeredocWord(w)?.name, 'EOF', 'name')));
  }
  for (const w of t.parseHeredocWord.invalid as string[]) {
    out.push(check(`parseHeredocWord/invalid/${w}`, () => expectDockerfileError(() => parseHeredocWord(w))));
  }
  for (const w of t.parseHeredocWord.notHeredoc as string[]) {
    out.push(check(`parseHeredocWord/notHeredoc/${w}`, () => expectEqual(parseHeredocWord(w), undefined, 'heredoc')));
  }

  // heredocsFromLine. BuildKit's TestHeredocsFromLine checks each heredoc found against the
  // expected name at the same index (and, for a nil expectation, that none is found); it does not
  // check that every expected name is found. The same check is made here: for `RUN <<- EOF` the
  // table lists `EOF`, but BuildKit's lexer splits that line into `<<-` and `EOF` and finds no
  // heredoc (`<<-` alone has no delimiter), and so does this parser.
  for (const c of t.heredocsFromLine.cases as { line: string; names: string[] | null }[]) {
    out.push(
      check(`heredocsFromLine/${c.line}`, () => {
        const names = heredocsFromLine(c.line).map((h) => h.name);
        const expected = c.names ?? [];
        if (names.length > expected.length) return `found ${JSON.stringify(names)}, expected ${JSON.stringify(c.names)}`;
        return expectEqual(names, expected.slice(0, names.length), 'names');
      }),
    );
  }

  (t.chompHeredocContent as { input: string; expected: string }[]).forEach((c, i) => {
    out.push(check(`chompHeredocContent/${i}`, () => expectEqual(chompHeredocContent(c.input), c.expected)));
  });

  for (const c of t.parseWords.cases as { input: string; expect: string[] }[]) {
    out.push(check(`parseWords/${c.input}`, () => expectEqual(parseWords(c.input), c.expect, 'words')));
  }

  for (const [text, expected] of t.jsonArrays.valid as [string, string[]][]) {
    out.push(check(`jsonArrays/valid/${text}`, () => expectEqual(parseJSONArray(text), expected, 'array')));
  }
  for (const text of t.jsonArrays.invalidNotStrings as string[]) {
    out.push(
      check(`jsonArrays/invalidNotStrings/${text}`, () =>
        expectDockerfileError(() => parseJSONArray(text), 'arrays must be comprised of strings only'),
      ),
    );
  }

  for (const c of t.nameVal.cases as { cmd: string; rest: string; chain?: string[]; error?: boolean; errorContains?: string }[]) {
    out.push(
      check(`nameVal/${c.cmd} ${c.rest}`, () =>
        c.error
          ? expectDockerfileError(() => parseNameVal(c.rest, c.cmd), c.errorContains)
          : expectEqual(chainValues(parseNameVal(c.rest, c.cmd)), c.chain, 'chain'),
      ),
    );
  }

  for (const r of lineNumberCases(t)) out.push({ ...r, name: `lineNumbers/${r.name}` });

  {
    const spec = t.emptyContinuationWarnings;
    out.push(
      check('emptyContinuationWarnings', () => {
        const { warnings } = parse(spec.dockerfile);
        if (warnings.length !== spec.warningCount) return `expected ${spec.warningCount} warnings, got ${warnings.length}`;
        for (let i = 0; i < spec.contains.length; i++) {
          for (const s of spec.contains[i] as string[]) {
            if (!warnings[i]!.short.includes(s)) return `warning ${i} ${JSON.stringify(warnings[i]!.short)} lacks ${JSON.stringify(s)}`;
          }
        }
        if (!warnings[0]!.detail?.includes('will become errors in a future release')) return 'warning detail';
        return undefined;
      }),
    );
  }

  out.push(
    check('maxLineLength', () => {
      // The text of BuildKit's TestParseReturnsScannerErrors.
      const df = `\n\t\tFROM image\n\t\tLABEL test=${'a'.repeat(65536)}\n`;
      try {
        parse(df);
      } catch (err) {
        if (!(err instanceof DockerfileError)) return `threw ${String(err)}`;
        return expectEqual(err.detail, t.maxLineLength.error, 'error');
      }
      return 'parsed a line over the limit';
    }),
  );

  (t.directives.parseAll as { text: string; directives: [string, string][] }[]).forEach((c, i) => {
    out.push(
      check(`directives/parseAll/${i}`, () =>
        expectEqual(
          new DirectiveParser().parseAll(c.text).map((d) => [d.name, d.value]),
          c.directives,
          'directives',
        ),
      ),
    );
  });
  type DirectiveCase = { text: string; ok: boolean; ref?: string; value?: string; cmdline?: string; line?: number };
  const directiveCase = (c: DirectiveCase, found: ReturnType<typeof detectSyntax>, expectedRef: string | undefined) => {
    if (!c.ok) return found ? `expected no directive, got ${JSON.stringify(found)}` : undefined;
    if (!found) return 'expected a directive, found none';
    return (
      expectEqual(found.ref, expectedRef, 'ref') ??
      (c.cmdline !== undefined ? expectEqual(found.cmdline, c.cmdline, 'cmdline') : undefined) ??
      (c.line !== undefined ? expectEqual(found.line, c.line, 'line') : undefined)
    );
  };
  (t.directives.detectSyntax as DirectiveCase[]).forEach((c, i) => {
    out.push(check(`directives/detectSyntax/${i}`, () => directiveCase(c, detectSyntax(c.text), c.ref)));
  });
  (t.directives.parseDirectiveCheck as DirectiveCase[]).forEach((c, i) => {
    out.push(check(`directives/parseDirectiveCheck/${i}`, () => directiveCase(c, parseDirective('check', c.text), c.value)));
  });

  return out;
}

const parserTables: Suite = {
  name: 'buildkit-parser/parser-tables',
  run: () => parserTableCases(tables()),
};

const realWorld: Suite = {
  name: 'real-world',
  run: () =>
    dirs('real-world').map((c) =>
      check(c, () => {
        const { ast } = parse(read('real-world', c, 'Dockerfile'));
        return ast.children.length > 0 ? undefined : 'no instructions';
      }),
    ),
};

export const suites: Suite[] = [testfiles, negative, testfileLine, parserTables, realWorld];
