/**
 * What instruction handling needs from the shell-word lexer (src/dockerfile/shell's ShellLex), as a
 * small structural interface, and an ordered environment list with BuildKit's replace-in-place
 * semantics (llb.EnvList) for the global ARG scope.
 */
import { DockerfileError, KilnError, type SourceLocation } from '../../errors.js';
import type { EnvLookup, ProcessWordResult } from '../shell/index.js';

/** A variable scope: the value of a name, and every name in definition order. */
export type EnvGetter = EnvLookup;

export interface WordLexer {
  /** One word: expansion and quote removal, no splitting; with the variables it referenced. */
  processWordWithMatches(word: string, env: EnvLookup): ProcessWordResult;
  /** Expansion then splitting into words (EXPOSE). */
  processWords(word: string, env: EnvLookup): string[];
}

/** Ordered `KEY=value` list: setting an existing key replaces it where it stands. */
export class EnvList implements EnvGetter {
  // A Map keeps insertion order and leaves a key in place when it is set again.
  private readonly entries = new Map<string, string>();

  constructor(init?: Iterable<readonly [string, string]>) {
    if (init) for (const [k, v] of init) this.entries.set(k, v);
  }

  get(key: string): string | undefined {
    return this.entries.get(key);
  }

  has(key: string): boolean {
    return this.entries.has(key);
  }

  keys(): string[] {
    return [...this.entries.keys()];
  }

  set(key: string, value: string): this {
    this.entries.set(key, value);
    return this;
  }

  delete(key: string): this {
    this.entries.delete(key);
    return this;
  }

  clone(): EnvList {
    return new EnvList(this.entries);
  }

  /** `KEY=value` strings, in order. */
  toList(): string[] {
    return [...this.entries].map(([k, v]) => `${k}=${v}`);
  }

  toEntries(): [string, string][] {
    return [...this.entries];
  }
}

const DEFECTS = [TypeError, RangeError, ReferenceError, SyntaxError];

/**
 * Runs a lexer call, turning its failure (a bad `${VAR?msg}`, an unterminated quote) into a
 * DockerfileError at `loc`; defects in kiln itself are not disguised.
 */
export function lexAt<T>(loc: SourceLocation, fn: () => T, prefix = ''): T {
  try {
    return fn();
  } catch (err) {
    if (err instanceof DockerfileError) {
      if (!prefix) throw err.location ? err : err.at(loc);
      throw new DockerfileError(prefix + err.detail, loc, { cause: err });
    }
    if (err instanceof KilnError || (err instanceof Error && !DEFECTS.some((D) => err instanceof D))) {
      throw new DockerfileError(prefix + err.message, loc, { cause: err });
    }
    throw err;
  }
}
