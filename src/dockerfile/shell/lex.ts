/**
 * Word expansion with the semantics of BuildKit's Dockerfile shell lexer (frontend/dockerfile/shell):
 * quote removal, escapes with the Dockerfile's escape token, `$VAR` / `${VAR}` and the `${VAR...}`
 * modifiers, and, for processWords, splitting into words after expansion. It is not a shell: no
 * command substitution, arithmetic, globbing or `${VAR:=x}`.
 */
import type { EnvLookup } from './env.js';
import { ShellExpansionError } from './error.js';
import {
  ExpansionTooLargeError,
  PatternSyntaxError,
  ShellPattern,
  replaceAll,
  replaceFirst,
  reversePattern,
  trimPrefix,
  trimSuffix,
} from './pattern.js';

export type EscapeToken = '\\' | '`';

/** Switches with the meaning of BuildKit's Lex fields of the same names. */
export interface ShellLexOptions {
  /** Keep the quote characters in the result (their contents are still treated as quoted). */
  rawQuotes?: boolean;
  /** Keep escape characters in the result (what they escape is still taken literally). */
  rawEscapes?: boolean;
  /** Treat `'` and `"` as ordinary characters. */
  skipProcessQuotes?: boolean;
  /** Leave references to unset variables as written (`$X`, `${X}`, `${X:-y}`) instead of expanding them. */
  skipUnsetEnv?: boolean;
}

export interface ProcessWordResult {
  /** The expanded word, as processWord returns it. */
  result: string;
  /** The same expansion split into words, as processWords returns it. */
  words?: string[];
  /** Variables referenced that are set (even to the empty string). */
  matched: Set<string>;
  /** Variables referenced that are not set. */
  unmatched: Set<string>;
}

/**
 * Deepest nesting of `${...}` accepted. BuildKit has no limit (Go stacks grow); this one keeps the
 * recursive descent well inside Node's stack while being far beyond anything a Dockerfile needs.
 */
export const MAX_NESTING = 256;
/**
 * Longest expansion produced, in UTF-16 units, so that `${A//?/${A//?/...}}` fails with a clear
 * error instead of exhausting memory.
 */
export const MAX_RESULT_LENGTH = 1 << 24;

/** An expansion failure inside the lexer; turned into a ShellExpansionError at the top. */
class Failure extends Error {}

// Go's unicode.IsSpace, IsDigit and IsLetter, which BuildKit uses: the Unicode White_Space
// property, category Nd, category L.
const WHITE_SPACE = /^\p{White_Space}$/u;
const SPACE_RUNS = /\p{White_Space}+/gu;
const DIGIT = /^\p{Nd}$/u;
const LETTER = /^\p{L}$/u;

function isSpace(ch: string): boolean {
  const c = ch.charCodeAt(0);
  if (c < 0x80) return c === 0x20 || (c >= 0x09 && c <= 0x0d);
  return WHITE_SPACE.test(ch);
}

function isDigit(ch: string): boolean {
  const c = ch.charCodeAt(0);
  if (c < 0x80) return c >= 0x30 && c <= 0x39;
  return DIGIT.test(ch);
}

function isLetter(ch: string): boolean {
  const c = ch.charCodeAt(0);
  if (c < 0x80) return (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a);
  return LETTER.test(ch);
}

/** POSIX special parameters: never set in a Dockerfile, but `$@`, `${#}`... are valid references. */
function isSpecialParam(ch: string): boolean {
  return ch.length === 1 && '@*#?-$!0'.includes(ch);
}

/** Blanks allowed between `<<` and a heredoc delimiter. */
function isHeredocBlank(ch: string | undefined): boolean {
  return ch === ' ' || ch === '\t' || ch === '\r';
}

/** Reads a word one code point at a time. */
class Scanner {
  private readonly chars: string[];
  private pos: number;

  constructor(text: string) {
    this.chars = Array.from(text);
    // BuildKit reads words with Go's text/scanner, which skips a byte-order mark that is the very
    // first character.
    this.pos = this.chars[0] === '\uFEFF' ? 1 : 0;
  }

  peek(): string | undefined {
    return this.chars[this.pos];
  }

  next(): string | undefined {
    const ch = this.chars[this.pos];
    if (ch !== undefined) this.pos++;
    return ch;
  }
}

/**
 * Collects words for processWords. Text that came from an unquoted variable is split at white
 * space; quoted text, escaped characters and heredoc markers are kept whole; a word that ends up
 * empty (`''`) is dropped. Every nested word (the `x` of `${V:-x}`) has a collector of its own:
 * current BuildKit shares one buffer between them, so `ab${V:-x}` splits to `[x]` there, a
 * regression of a buffer-reuse optimisation; kiln keeps the earlier `[abx]`.
 */
class WordCollector {
  private readonly words: string[] = [];
  private buf = '';

  /** One character of unquoted text: white space ends the current word. */
  addChar(ch: string): void {
    if (!isSpace(ch)) this.buf += ch;
    else if (this.buf !== '') {
      this.words.push(this.buf);
      this.buf = '';
    }
  }

  /** Unquoted text from a variable: split at white space. */
  addString(s: string): void {
    let from = 0;
    for (const m of s.matchAll(SPACE_RUNS)) {
      this.buf += s.slice(from, m.index);
      if (this.buf !== '') {
        this.words.push(this.buf);
        this.buf = '';
      }
      from = m.index! + m[0].length;
    }
    this.buf += s.slice(from);
  }

  addRaw(s: string): void {
    this.buf += s;
  }

  finish(): string[] {
    if (this.buf !== '') {
      this.words.push(this.buf);
      this.buf = '';
    }
    return this.words;
  }
}

/** The state of one processWord* call. */
class Expansion {
  readonly matched = new Set<string>();
  readonly unmatched = new Set<string>();
  private readonly scanner: Scanner;
  private depth = 0;

  constructor(
    private readonly lex: ShellLex,
    word: string,
    private readonly env: EnvLookup,
  ) {
    this.scanner = new Scanner(word);
  }

  /**
   * Reads up to (and consuming) `stop`, or to the end of input when `stop` is undefined. Reaching
   * the end while looking for `stop` is an error. `rawEscapes` is on inside `${V#...}`, `${V%...}`
   * and `${V/.../...}`, where escapes must survive for the pattern, and as the lexer's option at the
   * top level; nested `${V:-...}` words always remove them.
   */
  processStopOn(stop: string | undefined, rawEscapes: boolean): { result: string; words: string[] } {
    const sc = this.scanner;
    const lex = this.lex;
    const words = new WordCollector();
    let result = '';
    for (let ch = sc.peek(); ch !== undefined; ch = sc.peek()) {
      if (ch === stop) {
        sc.next();
        return { result, words: words.finish() };
      }
      if (ch === '$') {
        const value = this.processDollar();
        result += value;
        if (result.length > MAX_RESULT_LENGTH) throw new Failure('expansion result too large');
        words.addString(value);
        continue;
      }
      if (ch === '<') {
        const marker = this.processPossibleHeredoc();
        result += marker;
        words.addRaw(marker);
        continue;
      }
      if ((ch === "'" || ch === '"') && !lex.skipProcessQuotes) {
        const quoted = ch === "'" ? this.processSingleQuote() : this.processDoubleQuote(rawEscapes);
        result += quoted;
        words.addRaw(quoted);
        continue;
      }
      sc.next();
      if (ch === lex.escapeToken) {
        if (rawEscapes) {
          result += ch;
          words.addRaw(ch);
        }
        // An escape token at the very end is dropped.
        const escaped = sc.next();
        if (escaped === undefined) break;
        result += escaped;
        words.addRaw(escaped);
      } else {
        result += ch;
        words.addChar(ch);
      }
    }
    if (stop !== undefined) throw new Failure(`unexpected end of statement while looking for matching ${stop}`);
    return { result, words: words.finish() };
  }

  /** `'...'`: everything up to the next `'` is literal; there is no way to escape `'`. */
  private processSingleQuote(): string {
    const sc = this.scanner;
    const raw = this.lex.rawQuotes;
    let out = raw ? "'" : '';
    sc.next();
    for (;;) {
      const ch = sc.next();
      if (ch === undefined) throw new Failure('unexpected end of statement while looking for matching single-quote');
      if (ch === "'") return raw ? `${out}'` : out;
      out += ch;
    }
  }

  /**
   * `"..."`: literal except for `$` expansions; the escape token escapes only `"`, `$` and itself
   * and is kept before anything else.
   */
  private processDoubleQuote(rawEscapes: boolean): string {
    const sc = this.scanner;
    const raw = this.lex.rawQuotes;
    const esc = this.lex.escapeToken;
    let out = raw ? '"' : '';
    sc.next();
    for (;;) {
      const peek = sc.peek();
      if (peek === undefined) throw new Failure('unexpected end of statement while looking for matching double-quote');
      if (peek === '"') {
        sc.next();
        return raw ? `${out}"` : out;
      }
      if (peek === '$') {
        out += this.processDollar();
        if (out.length > MAX_RESULT_LENGTH) throw new Failure('expansion result too large');
        continue;
      }
      let ch = sc.next()!;
      if (ch === esc) {
        if (rawEscapes) out += ch;
        const after = sc.peek();
        // An escape token right before the end is dropped (the missing `"` is reported next).
        if (after === undefined) continue;
        if (after === '"' || after === '$' || after === esc) ch = sc.next()!;
      }
      out += ch;
    }
  }

  /** `$NAME`, `${NAME}` and `${NAME<modifier>...}`, with the scanner on the `$`. */
  private processDollar(): string {
    const sc = this.scanner;
    const lex = this.lex;
    sc.next();

    if (sc.peek() !== '{') {
      const name = this.processName();
      if (name === '') return '$';
      const value = this.getEnv(name);
      if (value === undefined && lex.skipUnsetEnv) return `$${name}`;
      return value ?? '';
    }

    sc.next();
    const first = sc.peek();
    if (first === undefined) throw new Failure("syntax error: missing '}'");
    if (first === '{' || first === '}' || first === ':') throw new Failure('syntax error: bad substitution');
    const name = this.processName();
    const ch = sc.next();
    // BuildKit reports `${NAME` at the end of input as an unsupported modifier U+FFFD; the missing
    // brace is what is actually wrong.
    if (ch === undefined) throw new Failure("syntax error: missing '}'");

    if (ch === '}') {
      const value = this.getEnv(name);
      if (value === undefined && lex.skipUnsetEnv) return `\${${name}}`;
      return value ?? '';
    }
    if (ch !== '/' && ch !== ':' && ch !== '+' && ch !== '-' && ch !== '?' && ch !== '#' && ch !== '%') {
      throw new Failure(`unsupported modifier (${ch}) in substitution`);
    }
    // A failure anywhere ends the whole expansion, so the depth needs no unwinding on errors.
    if (++this.depth > MAX_NESTING) throw new Failure(`syntax error: substitutions nested more than ${MAX_NESTING} deep`);
    const value = ch === '/' ? this.processReplace(name) : this.processModifier(name, ch);
    this.depth--;
    return value;
  }

  /** The word of `${NAME<op>word}`, up to and consuming the closing `}`. */
  private wordUntilBrace(rawEscapes: boolean): string {
    try {
      return this.processStopOn('}', rawEscapes).result;
    } catch (err) {
      // Any failure that ran into the end of input (an unbalanced nested `${` included) is
      // reported as the missing brace, as BuildKit does.
      if (err instanceof Failure && this.scanner.peek() === undefined) throw new Failure("syntax error: missing '}'");
      throw err;
    }
  }

  /** `${NAME-w} ${NAME:-w} ${NAME+w} ${NAME:+w} ${NAME?w} ${NAME:?w} ${NAME#p} ${NAME##p} ${NAME%p} ${NAME%%p}` */
  private processModifier(name: string, first: string): string {
    const sc = this.scanner;
    let op: string = first;
    let written = first;
    const nullIsUnset = first === ':';
    if (nullIsUnset) {
      const second = sc.next();
      if (second === undefined) throw new Failure("syntax error: missing '}'");
      op = second;
      written += second;
    }
    const isPattern = op === '#' || op === '%';
    if (nullIsUnset && isPattern) throw new Failure(`unsupported modifier (${written}) in substitution`);

    // The word is expanded before the variable is looked up, whether or not it is used, so the
    // variables it names are always reported as matched or unmatched.
    let word = this.wordUntilBrace(isPattern);
    const value = this.getEnv(name);
    const set = value !== undefined;
    if (!set && this.lex.skipUnsetEnv) return `\${${name}${written}${word}}`;
    const empty = !set || (nullIsUnset && value === '');

    switch (op) {
      case '-':
        return empty ? word : value!;
      case '+':
        return empty ? '' : word;
      case '?':
        if (!set) throw new Failure(`${name}: ${word || 'is not allowed to be unset'}`);
        if (empty) throw new Failure(`${name}: ${word || 'is not allowed to be empty'}`);
        return value!;
      case '#':
      case '%': {
        // One `#`/`%` removes the shortest match, two the longest.
        const greedy = word.startsWith(op);
        if (greedy) word = word.slice(1);
        const text = value ?? '';
        if (op === '#') return trimPrefix(this.pattern(word, word), text, greedy);
        return trimSuffix(this.pattern(reversePattern(word), word), text, greedy);
      }
      default:
        throw new Failure(`unsupported modifier (${written}) in substitution`);
    }
  }

  /** `${NAME/pattern/replacement}` and `${NAME//pattern/replacement}`. */
  private processReplace(name: string): string {
    const sc = this.scanner;
    const all = sc.peek() === '/';
    if (all) sc.next();

    let pattern: string;
    try {
      pattern = this.processStopOn('/', true).result;
    } catch (err) {
      if (err instanceof Failure && sc.peek() === undefined) throw new Failure("syntax error: missing '/' in ${}");
      throw err;
    }
    const replacement = this.wordUntilBrace(true);

    const value = this.getEnv(name);
    // Written back with one slash for `//` too, as BuildKit does.
    if (value === undefined && this.lex.skipUnsetEnv) return `\${${name}/${pattern}/${replacement}}`;
    const compiled = this.pattern(pattern, pattern);
    if (!all) return replaceFirst(compiled, value ?? '', replacement);
    try {
      return replaceAll(compiled, value ?? '', replacement, MAX_RESULT_LENGTH);
    } catch (err) {
      if (err instanceof ExpansionTooLargeError) throw new Failure('expansion result too large');
      throw err;
    }
  }

  /**
   * Parses `source`; errors name the pattern as the user wrote it (`shown`), where BuildKit names
   * the reversed pattern it built for `%`.
   */
  private pattern(source: string, shown: string): ShellPattern {
    try {
      return ShellPattern.parse(source);
    } catch (err) {
      if (err instanceof PatternSyntaxError) throw new Failure(`invalid pattern (${shown}) in substitution: ${err.message}`);
      throw err;
    }
  }

  /**
   * A variable name: letters, digits and `_`; or a run of digits (positional parameters); or one
   * special parameter character. Empty when none of those follows.
   */
  private processName(): string {
    const sc = this.scanner;
    let name = '';
    for (let ch = sc.peek(); ch !== undefined; ch = sc.peek()) {
      if (name === '' && isDigit(ch)) {
        for (let d = sc.peek(); d !== undefined && isDigit(d); d = sc.peek()) name += sc.next();
        return name;
      }
      if (name === '' && isSpecialParam(ch)) {
        sc.next();
        return ch;
      }
      if (!isLetter(ch) && !isDigit(ch) && ch !== '_') break;
      sc.next();
      name += ch;
    }
    return name;
  }

  /**
   * `<`, or `<<` with the blanks after it: kept as they are in the result, and kept together with
   * the delimiter that follows when splitting words, so `<< EOF` stays one word.
   */
  private processPossibleHeredoc(): string {
    const sc = this.scanner;
    sc.next();
    if (sc.peek() !== '<') return '<';
    sc.next();
    let out = '<<';
    while (isHeredocBlank(sc.peek())) out += sc.next();
    return out;
  }

  private getEnv(name: string): string | undefined {
    const value = this.env.get(name);
    if (value === undefined) this.unmatched.add(name);
    else this.matched.add(name);
    return value;
  }
}

/**
 * BuildKit's shell lexer. Options can also be changed between calls through the public fields, as
 * BuildKit's callers do. Calls are independent: no state is kept from one word to the next.
 */
export class ShellLex {
  readonly escapeToken: EscapeToken;
  rawQuotes: boolean;
  rawEscapes: boolean;
  skipProcessQuotes: boolean;
  skipUnsetEnv: boolean;

  constructor(escapeToken: EscapeToken = '\\', options: ShellLexOptions = {}) {
    if (escapeToken !== '\\' && escapeToken !== '`') {
      throw new TypeError(`escape token must be '\\' or '\`', got ${JSON.stringify(escapeToken)}`);
    }
    this.escapeToken = escapeToken;
    this.rawQuotes = options.rawQuotes ?? false;
    this.rawEscapes = options.rawEscapes ?? false;
    this.skipProcessQuotes = options.skipProcessQuotes ?? false;
    this.skipUnsetEnv = options.skipUnsetEnv ?? false;
  }

  /** Expands `word` into one string (white space kept). Throws ShellExpansionError. */
  processWord(word: string, env: EnvLookup): string {
    return this.process(word, env).result;
  }

  /**
   * Expands `word` and splits it into words: white space outside quotes and escapes separates words,
   * including white space that comes from an unquoted variable; empty words are dropped.
   * Throws ShellExpansionError.
   */
  processWords(word: string, env: EnvLookup): string[] {
    return this.process(word, env).words;
  }

  /** processWord plus the variables the word referenced, split into set and unset. */
  processWordWithMatches(word: string, env: EnvLookup): ProcessWordResult {
    return this.process(word, env);
  }

  private process(word: string, env: EnvLookup): Required<ProcessWordResult> {
    const x = new Expansion(this, word, env);
    try {
      const { result, words } = x.processStopOn(undefined, this.rawEscapes);
      return { result, words, matched: x.matched, unmatched: x.unmatched };
    } catch (err) {
      if (err instanceof Failure) throw new ShellExpansionError(word, err.message);
      // Resource limits of this process rather than defects: a call made with little stack left,
      // or a string longer than the engine allows.
      if (err instanceof RangeError) {
        const reason = /call stack/i.test(err.message) ? 'substitutions nested too deeply' : 'expansion result too large';
        throw new ShellExpansionError(word, reason);
      }
      throw err;
    }
  }
}
