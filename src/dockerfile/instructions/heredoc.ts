/**
 * BuildKit's `MustParseHeredoc` for COPY/ADD arguments: a word that declares a heredoc
 * (`<<EOF`, `<<-"EOF"`, `3<<EOF`), with lexing errors meaning "not a heredoc".
 */
import { DockerfileError } from '../../errors.js';
import type { Heredoc } from '../parser/ast.js';
import { chompHeredocContent, parseHeredocWord as parseWord } from '../parser/heredoc.js';

export { chompHeredocContent };

export function parseHeredocWord(src: string): Heredoc | undefined {
  try {
    return parseWord(src);
  } catch (err) {
    if (err instanceof DockerfileError) return undefined;
    throw err;
  }
}
