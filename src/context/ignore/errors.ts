import { KilnError, type KilnErrorOptions } from '../../errors.js';

/**
 * An ignore (or include) pattern BuildKit would reject: a lone `!`, a malformed character class or
 * trailing backslash (Go's `filepath.ErrBadPattern`), or a pattern whose translated regular
 * expression does not compile. The last kind is only reported when the pattern is actually
 * evaluated, exactly when BuildKit reports it.
 */
export class IgnorePatternError extends KilnError {
  constructor(
    /** The pattern as the matcher saw it (trimmed and cleaned, `!` included). */
    readonly pattern: string,
    /** Why it is invalid, e.g. `syntax error in pattern`. */
    readonly reason: string,
    options: KilnErrorOptions = {},
  ) {
    super('IGNORE_PATTERN', `invalid ignore pattern ${JSON.stringify(pattern)}: ${reason}`, {
      hint: 'fix or remove the pattern in .dockerignore',
      ...options,
    });
  }
}
