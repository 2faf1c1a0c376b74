import { DockerfileError, type SourceLocation } from '../../errors.js';
import { goQuote } from './quote.js';

/**
 * A word that cannot be expanded: bad `${...}` syntax, an unterminated quote, a `${VAR?msg}` whose
 * variable is unset. Worded as BuildKit words it (`failed to process "<word>": <reason>`). The lexer
 * does not know where the word came from, so it raises this without a location and the caller places
 * it with `.at({ file, line })`.
 */
export class ShellExpansionError extends DockerfileError {
  /** The word as given to the lexer. */
  readonly word: string;
  /** What went wrong, without the `failed to process` prefix (e.g. `VAR: is not allowed to be unset`). */
  readonly reason: string;

  constructor(word: string, reason: string, location?: SourceLocation) {
    super(`failed to process ${goQuote(word)}: ${reason}`, location);
    this.word = word;
    this.reason = reason;
  }

  /** The same error at a location, still a ShellExpansionError. */
  override at(location: SourceLocation): ShellExpansionError {
    return new ShellExpansionError(this.word, this.reason, location);
  }
}
