/**
 * "did you mean X?" hints appended to some errors, chosen as BuildKit chooses them: the closest
 * candidate by edit distance, only when it is closer than 3 edits and not an exact match.
 */
import { goToLower, goToUpper } from '../parser/gostr.js';

/** Edit distance between two strings, counted in code points (insert, delete, substitute all cost 1). */
export function levenshtein(a: string, b: string): number {
  const s = Array.from(a);
  const t = Array.from(b);
  if (s.length === 0) return t.length;
  if (t.length === 0) return s.length;
  let prev = new Array<number>(t.length + 1);
  let cur = new Array<number>(t.length + 1);
  for (let j = 0; j <= t.length; j++) prev[j] = j;
  for (let i = 1; i <= s.length; i++) {
    cur[0] = i;
    for (let j = 1; j <= t.length; j++) {
      const cost = s[i - 1] === t[j - 1] ? 0 : 1;
      cur[j] = Math.min(prev[j]! + 1, cur[j - 1]! + 1, prev[j - 1]! + cost);
    }
    [prev, cur] = [cur, prev];
  }
  return prev[t.length]!;
}

function matchCase(value: string, original: string): string {
  if (original === goToLower(original)) return goToLower(value);
  if (original === goToUpper(original)) return goToUpper(value);
  return value;
}

/**
 * The candidate to suggest for `value`, or undefined. An exact match means the error was about
 * something else, so nothing is suggested. Ties go to the earliest candidate so that messages are
 * stable from run to run.
 */
export function suggest(value: string, options: readonly string[], caseSensitive: boolean): string | undefined {
  const needle = caseSensitive ? value : goToLower(value);
  let best: string | undefined;
  let min = 3;
  for (const raw of options) {
    const opt = caseSensitive ? raw : goToLower(raw);
    if (opt === needle) return undefined;
    const d = levenshtein(needle, opt);
    if (d < min) {
      min = d;
      best = caseSensitive ? opt : matchCase(opt, value);
    }
  }
  return best;
}

/** `message` with BuildKit's ` (did you mean X?)` tail when a close candidate exists. */
export function withSuggestion(message: string, value: string, options: readonly string[], caseSensitive: boolean): string {
  const match = suggest(value, options, caseSensitive);
  return match ? `${message} (did you mean ${match}?)` : message;
}
