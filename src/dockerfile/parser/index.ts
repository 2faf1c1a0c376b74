/**
 * The Dockerfile parser: BuildKit-exact AST, dump, directives, and the argument helpers the
 * instruction layer reuses.
 */
export type { Directives, Heredoc, Node, ParseResult, ParseWarning } from './ast.js';
export { newNode } from './ast.js';
export { parse, trimContinuation, LINE_TOO_LONG, MAX_LINE_BYTES, type ParseOptions } from './parse.js';
export { dump, quoteList } from './dump.js';
export {
  DirectiveParser,
  detectSyntax,
  parseDirective,
  escapeTokenFrom,
  matchDirectiveLine,
  type DetectedDirective,
  type Directive,
  type DirectiveName,
} from './directives.js';
export { chompHeredocContent, heredocsFromLine, lexWords, parseHeredocWord } from './heredoc.js';
export { extractBuilderFlags, parseWords, splitCommand, type EscapeToken, type SplitCommand } from './words.js';
export { parseJSONArray, parseJSONValue, NOT_STRING_ARRAY } from './json.js';
export { canContainHeredoc, nodeFromLine, parseNameVal } from './line-parsers.js';
export { goQuote, goToLower, isSpace, trimSpace } from './gostr.js';
