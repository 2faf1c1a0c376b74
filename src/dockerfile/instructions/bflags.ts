/**
 * Instruction flags (`COPY --from=x --link`), parsed the way BuildKit's BFlags parses them: every
 * instruction declares the flags it accepts, then the words the parser put in `Node.flags` are
 * matched against the declarations. Errors are plain strings here; the caller attaches the location.
 */
import { goToLower } from '../parser/gostr.js';
import { withSuggestion } from './suggest.js';

export type FlagType = 'bool' | 'string' | 'strings';

export interface Flag {
  readonly name: string;
  readonly type: FlagType;
  /** Current value: for bool flags `"true"`/`"false"`, for string flags the text. */
  value: string;
  /** Every value of a repeatable (`strings`) flag, in order. */
  values: string[];
}

/** A flag problem; the message is worded as BuildKit words it. */
export class FlagError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'FlagError';
  }
}

export class BFlags {
  /** The flag words as written, e.g. `--from=build`. */
  readonly args: readonly string[];
  private readonly flags = new Map<string, Flag>();
  private readonly used = new Map<string, Flag>();
  private setupError: string | undefined;

  constructor(args: readonly string[] = []) {
    this.args = args;
  }

  addBool(name: string, def: boolean): Flag {
    return this.add(name, 'bool', def ? 'true' : 'false');
  }

  addString(name: string, def: string): Flag {
    return this.add(name, 'string', def);
  }

  /** A flag that may be given several times (`--exclude`, `--mount`). */
  addStrings(name: string): Flag {
    return this.add(name, 'strings', '');
  }

  private add(name: string, type: FlagType, value: string): Flag {
    const flag: Flag = { name, type, value, values: [] };
    if (this.flags.has(name)) this.setupError ??= `Duplicate flag defined: ${name}`;
    else this.flags.set(name, flag);
    return flag;
  }

  isUsed(name: string): boolean {
    return this.used.has(name);
  }

  /** Names of the flags that were given, in the order first seen. */
  usedNames(): string[] {
    return [...this.used.keys()];
  }

  /** Matches the flag words against the declarations; throws FlagError on the first problem. */
  parse(): void {
    if (this.setupError) throw new FlagError(`error setting up flags: ${this.setupError}`);
    for (const a of this.args) {
      // `--` ends the flags (POSIX utility syntax); anything after it is not a flag.
      if (a === '--') return;
      if (!a.startsWith('--')) throw new FlagError(`arg should start with -- : ${a}`);
      const eq = a.indexOf('=');
      const hasValue = eq >= 0;
      const flagName = hasValue ? a.slice(0, eq) : a;
      const value = hasValue ? a.slice(eq + 1) : '';
      const name = flagName.slice(2);
      const flag = this.flags.get(name);
      if (!flag) {
        throw new FlagError(withSuggestion(`unknown flag: ${flagName}`, name, [...this.flags.keys()], true));
      }
      if (this.used.has(name) && flag.type !== 'strings') {
        throw new FlagError(`duplicate flag specified: ${flagName}`);
      }
      this.used.set(name, flag);
      switch (flag.type) {
        case 'bool': {
          // `--flag=` is an error; a bare `--flag` means true
          if (hasValue && value === '') throw new FlagError(`missing a value on flag: ${flagName}`);
          const v = goToLower(value);
          if (v === 'true' || v === '') flag.value = 'true';
          else if (v === 'false') flag.value = 'false';
          else throw new FlagError(`expecting boolean value for flag ${flagName}, not: ${value}`);
          break;
        }
        case 'string':
          if (!hasValue) throw new FlagError(`missing a value on flag: ${flagName}`);
          flag.value = value;
          break;
        case 'strings':
          if (!hasValue) throw new FlagError(`missing a value on flag: ${flagName}`);
          flag.values.push(value);
          break;
      }
    }
  }
}
