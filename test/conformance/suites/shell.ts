/**
 * BuildKit's shell-lexer vectors (frontend/dockerfile/shell): envVarTest (ProcessWord), wordsTest
 * (ProcessWords) and the tables transcribed from lex_test.go. All run with the lexer BuildKit's tests
 * use: escape token `\`, every option off.
 */
import { readFileSync } from 'node:fs';
import { ShellExpansionError, ShellLex, envFromList, envFromRecord } from '../../../src/dockerfile/shell/index.js';
import { ShellPattern, codePoints } from '../../../src/dockerfile/shell/pattern.js';
import { check, corpusPath, expectEqual, readCorpusJSON, type CaseResult, type Suite } from '../harness.js';

/** Runs `body`, which must throw a ShellExpansionError (anything else thrown is a defect). */
function expectExpansionError(body: () => unknown, contains?: string): string | undefined {
  let value: unknown;
  try {
    value = body();
  } catch (err) {
    if (!(err instanceof ShellExpansionError)) {
      return `threw ${err instanceof Error ? err.name : typeof err} instead of ShellExpansionError: ${String(err)}`;
    }
    if (contains !== undefined && !err.message.includes(contains)) return `error ${JSON.stringify(err.message)} lacks ${JSON.stringify(contains)}`;
    return undefined;
  }
  return `expected an error, got ${JSON.stringify(value)}`;
}

function sorted(names: Iterable<string>): string[] {
  return [...names].sort();
}

const envVarTest: Suite = {
  name: 'buildkit-shell/envVarTest',
  run() {
    const lex = new ShellLex('\\');
    const env = envFromList(['PWD=/home', 'SHELL=bash', 'KOREAN=한국어', 'NULL=']);
    const results: CaseResult[] = [];
    const lines = readFileSync(corpusPath('buildkit-shell', 'envVarTest'), 'utf8').split('\n');
    lines.forEach((raw, i) => {
      if (raw.startsWith('#')) return;
      const line = raw.trim();
      if (line === '') return;
      const name = `line ${i + 1}: ${line.replace(/\s+/g, ' ')}`;
      const fields = line.split('|');
      if (fields.length !== 3) {
        results.push({ name, ok: false, detail: `malformed line: ${fields.length} fields` });
        return;
      }
      const [platform, source, expected] = fields.map((f) => f.trim()) as [string, string, string];
      // W lines describe Windows, where variable names are case-insensitive; kiln builds for Linux.
      if (platform === 'W') return;
      if (platform !== 'A' && platform !== 'U') {
        results.push({ name, ok: false, detail: `unknown platform tag ${platform}` });
        return;
      }
      results.push(
        check(name, () =>
          expected === 'error'
            ? expectExpansionError(() => lex.processWord(source, env))
            : expectEqual(lex.processWord(source, env), expected),
        ),
      );
    });
    return results;
  },
};

const wordsTest: Suite = {
  name: 'buildkit-shell/wordsTest',
  run() {
    // Only BuildKit's default mode: its second pass (RawQuotes + SkipUnsetEnv) never reads the file.
    const lex = new ShellLex('\\');
    const envs: string[] = [];
    const results: CaseResult[] = [];
    const lines = readFileSync(corpusPath('buildkit-shell', 'wordsTest'), 'utf8').split('\n');
    if (lines[lines.length - 1] === '') lines.pop();
    lines.forEach((line, i) => {
      if (line.startsWith('#')) return;
      if (line.startsWith('ENV ')) {
        envs.push(line.slice(3).replace(/^ +/, ''));
        return;
      }
      const name = `line ${i + 1}: ${line}`;
      const parts = line.split('|');
      if (parts.length !== 2) {
        results.push({ name, ok: false, detail: `malformed line: ${parts.length} parts` });
        return;
      }
      const input = parts[0]!.trim();
      const expected = parts[1]!.replace(/^ +/, '').split(',');
      const env = envFromList(envs);
      results.push(
        check(name, () => {
          let words: string[];
          try {
            words = lex.processWords(input, env);
          } catch (err) {
            if (!(err instanceof ShellExpansionError)) throw err;
            words = ['error'];
          }
          return expectEqual(words, expected, 'words');
        }),
      );
    });
    return results;
  },
};

interface MatchCase {
  input: string;
  envs: Record<string, string>;
  expected?: string;
  error?: boolean;
  errorContains?: string;
  matches?: string[];
  unmatched?: string[];
}

interface LexTables {
  processWordWithMatches: MatchCase[];
  mandatoryEnvVars: { cases: MatchCase[] };
  platformTemplate: { cases: MatchCase[] };
  envsFromSlice: { cases: { env: string[]; name: string; value: string }[] };
  shellPatternToRegex: { cases: Record<string, string>; invalid: string[] };
}

/** Runs one processWordWithMatches case; sets are compared only where the case lists them. */
function matchCase(lex: ShellLex, c: MatchCase): string | undefined {
  const env = envFromRecord(c.envs);
  if (c.error) return expectExpansionError(() => lex.processWordWithMatches(c.input, env), c.errorContains);
  const r = lex.processWordWithMatches(c.input, env);
  return (
    expectEqual(r.result, c.expected) ??
    (c.matches ? expectEqual(sorted(r.matched), sorted(c.matches), 'matches') : undefined) ??
    (c.unmatched ? expectEqual(sorted(r.unmatched), sorted(c.unmatched), 'unmatched') : undefined)
  );
}

/**
 * Sample texts for comparing a pattern with the Go regexp BuildKit builds from it: the pattern's
 * own characters in several arrangements, so that both matches and near misses occur.
 */
function samplesFor(pattern: string): string[] {
  // A text the pattern should match as a whole: escapes resolved, `*` and `?` filled in.
  let literal = '';
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i]!;
    if (c === '\\' && i + 1 < pattern.length) literal += pattern[++i];
    else literal += c === '*' ? 'ab' : c === '?' ? 'c' : c;
  }
  const chars = [...new Set(Array.from(pattern.replace(/\\/g, '')))];
  const base = chars.join('');
  const out = new Set<string>(['', 'x', 'xyz', base, `${base}tail`, `${base}${base}`, [...chars].reverse().join('')]);
  for (const s of [pattern, literal]) for (const suffix of ['', '!', '*', literal]) out.add(s + suffix);
  for (const ch of chars) out.add(`${ch}rest`);
  return [...out].filter((s) => !/[\r\n\u2028\u2029]/.test(s));
}

const lexTables: Suite = {
  name: 'buildkit-shell/lex-tables',
  run() {
    const t = readCorpusJSON<LexTables>('buildkit-shell', 'lex-tables.json');
    const lex = new ShellLex('\\');
    const results: CaseResult[] = [];

    t.processWordWithMatches.forEach((c, i) => {
      results.push(check(`processWordWithMatches #${i}: ${c.input}`, () => matchCase(lex, c)));
    });
    t.mandatoryEnvVars.cases.forEach((c, i) => {
      // BuildKit's test calls ProcessWord; processWordWithMatches is the same expansion.
      results.push(check(`mandatoryEnvVars #${i}: ${c.input} ${JSON.stringify(c.envs)}`, () => matchCase(lex, c)));
    });
    t.platformTemplate.cases.forEach((c, i) => {
      results.push(check(`platformTemplate #${i}: ${JSON.stringify(c.envs)}`, () => matchCase(lex, c)));
    });
    t.envsFromSlice.cases.forEach((c, i) => {
      results.push(
        check(`envsFromSlice #${i}: ${JSON.stringify(c.env)} ${c.name}`, () =>
          expectEqual(envFromList(c.env).get(c.name) ?? '', c.value),
        ),
      );
    });

    // BuildKit compiles patterns to Go regexps; kiln matches them directly (see pattern.ts), so the
    // exact regexp is not an output of ours. Each case checks (1) that the Go regexp we would build
    // equals the table's, for diagnostics, and (2) the behaviour the table implies: on sample texts,
    // our greedy prefix match ends where the table's regexp (same meaning in JS for these patterns,
    // newline-free samples) ends.
    for (const [pattern, regexp] of Object.entries(t.shellPatternToRegex.cases)) {
      results.push(
        check(`shellPatternToRegex ${pattern}`, () => {
          const p = ShellPattern.parse(pattern);
          const problem = expectEqual(p.regexpSource(true, true), regexp, 'regexp');
          if (problem) return problem;
          const re = new RegExp(regexp, 'u');
          for (const sample of samplesFor(pattern)) {
            const m = re.exec(sample);
            const want = m ? m[0].length : -1;
            const cps = codePoints(sample);
            const end = p.matcher(cps, true).matchAt(0);
            const got = end < 0 ? -1 : String.fromCodePoint(...cps.slice(0, end)).length;
            if (got !== want) return `on ${JSON.stringify(sample)}: match end ${got}, regexp gives ${want}`;
          }
          return undefined;
        }),
      );
    }
    for (const pattern of t.shellPatternToRegex.invalid) {
      results.push(
        check(`shellPatternToRegex invalid ${pattern}`, () => {
          try {
            ShellPattern.parse(pattern);
          } catch {
            return undefined;
          }
          return 'expected a pattern error';
        }),
      );
    }
    return results;
  },
};

export const suites: Suite[] = [envVarTest, wordsTest, lexTables];
