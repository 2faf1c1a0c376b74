/**
 * .dockerignore vectors: moby/patternmatcher tables (matching, construction, translation, ignore
 * file reading) and tonistiigi/fsutil filtered walks over real temporary trees.
 *
 * kiln builds Linux images, so matching always uses the non-Windows rules (`\` escapes, `/`
 * separator): cases marked `platform: "unix"` run, cases for Windows only would be skipped.
 */
import { mkdir, mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  IgnorePatternError,
  MatchInfo,
  PatternMatcher,
  WalkFilter,
  matches,
  readIgnoreFile,
  translatePattern,
  walk,
} from '../../../src/context/ignore/index.js';
import { goClean, goDir } from '../../../src/context/ignore/gopath.js';
import { compileRe2 } from '../../../src/context/ignore/re2.js';
import { check, expectEqual, readCorpusJSON, type CaseResult, type Suite } from '../harness.js';

interface MatchCase {
  patterns: string[];
  path: string;
  match: boolean;
  error?: boolean;
  platform?: string;
  src?: string;
  constructOk?: boolean;
}

interface PatternmatcherJSON {
  matches: MatchCase[];
  filepathMatchTable: MatchCase[];
  misc: MatchCase[];
  construct: Array<{ patterns: string[]; ok: boolean; patternCount?: number; exclusions?: boolean; src: string }>;
  compile: Array<{ pattern: string; matchType: string; regexp: string | null; windowsRegexp: string | null }>;
  ignorefileReadAll: Array<{ content: string | null; expected: string[]; src: string }>;
}

const runsHere = (c: { platform?: string }) => c.platform === undefined || c.platform === 'unix';

const label = (c: { patterns: string[]; path: string }) => `${JSON.stringify(c.patterns)} ${JSON.stringify(c.path)}`;

/** Outcome of a call that may fail with a pattern error: the value, or 'error'. */
function attempt(fn: () => boolean): boolean | 'error' {
  try {
    return fn();
  } catch (err) {
    if (err instanceof IgnorePatternError) return 'error';
    throw err;
  }
}

/** The parent-chain walk moby's own test performs before asking about the path itself. */
function viaParentResults(pm: PatternMatcher, path: string): boolean {
  const parent = goDir(path);
  let info = MatchInfo.none;
  if (parent !== '.') {
    const dirs = parent.split('/');
    for (let i = 0; i < dirs.length; i++) info = pm.matchesUsingParentResults(dirs.slice(0, i + 1).join('/'), info).info;
  }
  return pm.matchesUsingParentResults(path, info).matched;
}

function patternmatcherSuite(): CaseResult[] {
  const data = readCorpusJSON<PatternmatcherJSON>('dockerignore', 'patternmatcher.json');
  const results: CaseResult[] = [];

  data.matches.filter(runsHere).forEach((c, i) => {
    results.push(
      check(`matches[${i}] ${label(c)}`, () => {
        const pm = new PatternMatcher(c.patterns);
        const got = {
          matchesOrParentMatches: pm.matchesOrParentMatches(c.path),
          matchesUsingParentResults: viaParentResults(pm, c.path),
          matchesUsingParentResultsNoContext: pm.matchesUsingParentResults(c.path, MatchInfo.none).matched,
        };
        const want = { matchesOrParentMatches: c.match, matchesUsingParentResults: c.match, matchesUsingParentResultsNoContext: c.match };
        return expectEqual(got, want);
      }),
    );
  });

  data.filepathMatchTable.filter(runsHere).forEach((c, i) => {
    results.push(
      check(`filepathMatchTable[${i}] ${label(c)}`, () =>
        expectEqual(attempt(() => matches(c.path, c.patterns)), c.error ? 'error' : c.match),
      ),
    );
  });

  data.misc.filter(runsHere).forEach((c, i) => {
    results.push(
      check(`misc[${i}] ${c.src?.split(' ')[0] ?? ''} ${label(c)}`, () => {
        if (c.constructOk) {
          const pm = new PatternMatcher(c.patterns);
          const first = attempt(() => pm.matchesOrParentMatches(c.path));
          const again = attempt(() => pm.matchesOrParentMatches(c.path));
          return expectEqual([first, again], ['error', 'error']);
        }
        return expectEqual(attempt(() => matches(c.path, c.patterns)), c.error ? 'error' : c.match);
      }),
    );
  });

  data.construct.forEach((c, i) => {
    results.push(
      check(`construct[${i}] ${c.src.split(' ')[0]}`, () => {
        let pm: PatternMatcher;
        try {
          pm = new PatternMatcher(c.patterns);
        } catch (err) {
          if (!(err instanceof IgnorePatternError)) throw err;
          return c.ok ? `unexpected error: ${err.message}` : undefined;
        }
        if (!c.ok) return 'expected construction to fail';
        return expectEqual({ count: pm.patterns.length, exclusions: pm.exclusions() }, { count: c.patternCount, exclusions: c.exclusions });
      }),
    );
  });

  // The table's regexps are the text BuildKit compiles; kiln generates the same text and runs it
  // on its own engine, so the classification, both regexp texts, and that the regexp compiles are
  // compared.
  data.compile.forEach((c, i) => {
    results.push(
      check(`compile[${i}] ${JSON.stringify(c.pattern)}`, () => {
        const cleaned = goClean(c.pattern);
        const unix = translatePattern(cleaned, '/');
        const windows = translatePattern(cleaned.replaceAll('/', '\\'), '\\');
        const problem = expectEqual(
          { matchType: unix.matchType, regexp: unix.regexp ?? null, windowsMatchType: windows.matchType, windowsRegexp: windows.regexp ?? null },
          { matchType: c.matchType, regexp: c.regexp, windowsMatchType: c.matchType, windowsRegexp: c.windowsRegexp },
        );
        if (problem) return problem;
        if (unix.regexp !== undefined && !compileRe2(unix.regexp).ok) return `regexp ${unix.regexp} does not compile`;
        return undefined;
      }),
    );
  });

  data.ignorefileReadAll.forEach((c, i) => {
    results.push(check(`ignorefileReadAll[${i}] ${c.src.split(' ')[0]}`, () => expectEqual(readIgnoreFile(c.content), c.expected)));
  });

  return results;
}

interface WalkCase {
  name: string;
  tree: Array<{ path: string; type: 'file' | 'dir' }>;
  excludePatterns?: string[];
  includePatterns?: string[];
  expectedWalk?: string[];
  openable?: Record<string, boolean>;
  excludeLayers?: string[][];
  error?: boolean;
}

async function walkCase(c: WalkCase): Promise<CaseResult> {
  const name = c.name;
  let filters: WalkFilter[];
  try {
    filters = c.excludeLayers
      ? c.excludeLayers.map((layer) => new WalkFilter({ excludePatterns: layer }))
      : [new WalkFilter({ includePatterns: c.includePatterns, excludePatterns: c.excludePatterns })];
  } catch (err) {
    if (err instanceof IgnorePatternError) {
      return c.error ? { name, ok: true } : { name, ok: false, detail: `unexpected error: ${err.message}` };
    }
    return { name, ok: false, detail: `threw ${String(err)}` };
  }
  if (c.error) return { name, ok: false, detail: 'expected the filter to be rejected' };

  const root = await mkdtemp(join(tmpdir(), 'kiln-dockerignore-'));
  try {
    for (const e of [...c.tree].sort((a, b) => a.path.length - b.path.length)) {
      const abs = join(root, e.path);
      if (e.type === 'dir') await mkdir(abs, { recursive: true });
      else await writeFile(abs, '');
    }
    const problems: string[] = [];
    if (c.expectedWalk) {
      const got: string[] = [];
      for await (const entry of walk(root, filters)) got.push(`${entry.stats.isDirectory() ? 'dir' : 'file'} ${entry.path}`);
      const p = expectEqual(got, c.expectedWalk, 'walk');
      if (p) problems.push(p);
    }
    if (c.openable) {
      const got: Record<string, boolean> = {};
      for (const path of Object.keys(c.openable)) {
        const exists = await stat(join(root, path)).then(() => true, () => false);
        got[path] = exists && filters.every((f) => f.allows(path));
      }
      const p = expectEqual(got, c.openable, 'openable');
      if (p) problems.push(p);
    }
    return problems.length ? { name, ok: false, detail: problems.join('; ') } : { name, ok: true };
  } catch (err) {
    return { name, ok: false, detail: `threw ${err instanceof Error ? `${err.name}: ${err.message}` : String(err)}` };
  } finally {
    await rm(root, { recursive: true, force: true });
  }
}

async function fsutilWalkSuite(): Promise<CaseResult[]> {
  const data = readCorpusJSON<{ cases: WalkCase[] }>('dockerignore', 'fsutil-walk.json');
  const results: CaseResult[] = [];
  for (const c of data.cases) results.push(await walkCase(c));
  return results;
}

export const suites: Suite[] = [
  { name: 'dockerignore/patternmatcher', run: patternmatcherSuite },
  { name: 'dockerignore/fsutil-walk', run: fsutilWalkSuite },
];
