/**
 * The variables a word is expanded against. Kept as a small lookup interface rather than a plain
 * record so the build engine can back it with whatever it keeps per stage (ARGs, ENVs, image config)
 * without copying on every instruction.
 */

export interface EnvLookup {
  /** The value of `name`, or `undefined` when it is not set (set-but-empty is `''`). */
  get(name: string): string | undefined;
  /** Every name that is set, each once, in the order first defined. */
  keys(): Iterable<string>;
}

/**
 * An environment from `NAME=VALUE` strings, read the way BuildKit reads a process environment: split
 * at the first `=`; a bare `NAME` is set to the empty string; a later entry for the same name wins.
 * Names are compared exactly (case-sensitive), as on Linux.
 */
export function envFromList(list: Iterable<string>): EnvLookup {
  const values = new Map<string, string>();
  for (const entry of list) {
    const eq = entry.indexOf('=');
    if (eq < 0) values.set(entry, '');
    else values.set(entry.slice(0, eq), entry.slice(eq + 1));
  }
  return new MapEnv(values);
}

/**
 * An environment from a record or map. Entries whose value is `undefined` count as unset, so a
 * caller can spread optional values into it without filtering.
 */
export function envFromRecord(record: Readonly<Record<string, string | undefined>> | ReadonlyMap<string, string>): EnvLookup {
  const values = new Map<string, string>();
  const entries: Iterable<[string, string | undefined]> =
    record instanceof Map ? record.entries() : Object.entries(record as Record<string, string | undefined>);
  for (const [k, v] of entries) if (v !== undefined) values.set(k, v);
  return new MapEnv(values);
}

/** The empty environment: every variable is unset. */
export const emptyEnv: EnvLookup = {
  get: () => undefined,
  keys: () => [],
};

class MapEnv implements EnvLookup {
  constructor(private readonly values: ReadonlyMap<string, string>) {}

  get(name: string): string | undefined {
    return this.values.get(name);
  }

  keys(): Iterable<string> {
    return this.values.keys();
  }
}
