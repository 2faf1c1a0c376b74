/**
 * Commands that act on several names (rmi, inspect, volume rm) go on past a failing one, as
 * docker's do, and report every failure at the end.
 */
import type { KilnError } from '../errors.js';

/** Earlier errors go to stderr; the last one is thrown, so the exit status is 1 after everything else ran. */
export function throwCollected(errors: readonly KilnError[]): void {
  if (!errors.length) return;
  for (const err of errors.slice(0, -1)) process.stderr.write(`kiln: ${err.describe()}\n`);
  throw errors[errors.length - 1];
}
