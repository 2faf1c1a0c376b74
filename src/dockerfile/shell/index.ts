/** Dockerfile word expansion, with the semantics of BuildKit's shell lexer. */
export { ShellLex, MAX_NESTING, MAX_RESULT_LENGTH } from './lex.js';
export type { EscapeToken, ShellLexOptions, ProcessWordResult } from './lex.js';
export { ShellExpansionError } from './error.js';
export { envFromList, envFromRecord, emptyEnv } from './env.js';
export type { EnvLookup } from './env.js';
export { goQuote } from './quote.js';
