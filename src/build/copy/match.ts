/**
 * COPY source wildcards with the semantics of Go's path.Match (which fsutil's copier uses), as the
 * context's matcher implements them. A malformed pattern matches nothing here, as fsutil ignores
 * the error.
 */
import { GoPattern, containsWildcards, splitWildcards as splitAt } from '../../context/gomatch.js';

export { containsWildcards };

/**
 * Splits a clean absolute path at its first component with a wildcard: the literal directory to
 * start from, and the relative pattern for what is below it (fsutil's splitWildcards).
 */
export function splitWildcards(path: string): { dir: string; pattern: string } {
  if (!containsWildcards(path)) return { dir: path, pattern: '' };
  const [dir, pattern] = splitAt(path);
  return { dir, pattern };
}

const compiled = new Map<string, GoPattern | null>();

/** Go path.Match(pattern, name); false for a malformed pattern. */
export function goMatch(pattern: string, name: string): boolean {
  let matcher = compiled.get(pattern);
  if (matcher === undefined) {
    try {
      matcher = new GoPattern(pattern);
    } catch {
      matcher = null;
    }
    if (compiled.size > 1000) compiled.clear();
    compiled.set(pattern, matcher);
  }
  return matcher !== null && matcher.matches(name);
}
