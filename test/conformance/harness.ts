/**
 * Conformance harness: every suite reads external vectors from ../shared/conformance in place and
 * reports one result per case. `npm run conformance` prints `SUITE: N passed, M failed`; the vitest
 * entry (test/conformance.test.ts) fails on any failed case.
 */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export interface CaseResult {
  /** Stable, human-readable case name (used by the exceptions file). */
  name: string;
  ok: boolean;
  /** Why it failed: expected vs actual, short. */
  detail?: string;
}

export interface Suite {
  /** e.g. `buildkit-parser/testfiles` */
  name: string;
  run(): CaseResult[] | Promise<CaseResult[]>;
}

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

/** Where the corpus lives: $KILN_CONFORMANCE_DIR, else ../shared/conformance beside the checkout. */
export function conformanceDir(): string {
  const dir = process.env.KILN_CONFORMANCE_DIR ?? resolve(REPO_ROOT, '../shared/conformance');
  if (!existsSync(join(dir, 'README.md'))) {
    throw new Error(
      `conformance corpus not found at ${dir}: check out kiln beside shared/ or set KILN_CONFORMANCE_DIR`,
    );
  }
  return dir;
}

export function corpusPath(...parts: string[]): string {
  return join(conformanceDir(), ...parts);
}

export function readCorpusJSON<T = any>(...parts: string[]): T {
  return JSON.parse(readFileSync(corpusPath(...parts), 'utf8')) as T;
}

/** Cases we deliberately decide differently from the reference, with the reason. Expected: none. */
export function exceptions(): Record<string, Record<string, string>> {
  return JSON.parse(readFileSync(join(REPO_ROOT, 'test/conformance/exceptions.json'), 'utf8'));
}

/** Runs a case body, turning a thrown error or a mismatch into a failed result. */
export function check(name: string, body: () => string | undefined | void): CaseResult {
  try {
    const problem = body();
    return problem ? { name, ok: false, detail: problem } : { name, ok: true };
  } catch (err) {
    return { name, ok: false, detail: `threw ${err instanceof Error ? `${err.name}: ${err.message}` : String(err)}` };
  }
}

/** Compares two values by JSON form, returning a short description of the difference. */
export function expectEqual(actual: unknown, expected: unknown, what = 'result'): string | undefined {
  const a = JSON.stringify(actual);
  const e = JSON.stringify(expected);
  return a === e ? undefined : `${what}: expected ${e}, got ${a}`;
}

/** Loads every suite from test/conformance/suites/*.ts (each file exports `suites: Suite[]`). */
export async function loadSuites(): Promise<Suite[]> {
  const { readdirSync } = await import('node:fs');
  const dir = join(REPO_ROOT, 'test/conformance/suites');
  const files = readdirSync(dir).filter((f) => f.endsWith('.ts')).sort();
  const all: Suite[] = [];
  for (const f of files) {
    const mod = (await import(join(dir, f))) as { suites?: Suite[] };
    if (!Array.isArray(mod.suites)) throw new Error(`${f} does not export suites`);
    all.push(...mod.suites);
  }
  return all;
}

export interface SuiteOutcome {
  suite: string;
  passed: number;
  failed: CaseResult[];
  excepted: CaseResult[];
}

export async function runSuite(suite: Suite): Promise<SuiteOutcome> {
  const allowed = exceptions()[suite.name] ?? {};
  const results = await suite.run();
  const outcome: SuiteOutcome = { suite: suite.name, passed: 0, failed: [], excepted: [] };
  for (const r of results) {
    if (r.ok) outcome.passed++;
    else if (allowed[r.name]) outcome.excepted.push(r);
    else outcome.failed.push(r);
  }
  return outcome;
}
