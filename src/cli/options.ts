/** Flag value parsers shared by commands, worded as docker words its flag errors. */
import { UsageError } from '../errors.js';

/** Accumulates repeated `--flag KEY=VALUE` (or `KEY`, taking the value from the environment) into a record. */
export function collectKeyValue(flag: string) {
  return (value: string, previous: Record<string, string>): Record<string, string> => {
    const eq = value.indexOf('=');
    if (eq === 0) throw new UsageError(`invalid argument "${value}" for "${flag}" flag: empty key`);
    const out = { ...previous };
    if (eq < 0) {
      // docker: `--build-arg NAME` takes NAME's value from the caller's environment, if set.
      const fromEnv = process.env[value];
      if (fromEnv !== undefined) out[value] = fromEnv;
    } else {
      out[value.slice(0, eq)] = value.slice(eq + 1);
    }
    return out;
  };
}

/** Accumulates a repeatable plain string flag. */
export function collectList(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}
