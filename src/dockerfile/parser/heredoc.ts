/**
 * Heredocs (`RUN <<EOF`), found the way BuildKit finds them.
 *
 * BuildKit runs its shell lexer over the whole joined instruction line (escape token always `\`,
 * quotes and escapes kept raw, unset variables left as written, no environment) and treats every
 * resulting word that looks like `[n]<<[-]WORD` as a heredoc; the delimiter word is lexed again to
 * remove quotes and to decide whether the body is expanded (it is not if any part was quoted).
 *
 * dockerfile-ast's heredoc detection is not used: it only looks at arguments that start with `<<`
 * (missing `3<<EOF`), takes the delimiter by stripping one pair of surrounding quotes (so `<<eo'f'`
 * gets the name `eo'f'` instead of `eof`), applies the `<<-` tab stripping of one heredoc to every
 * heredoc on the line, and does not report an unterminated heredoc. See parser.test.ts
 * ("dockerfile-ast divergences").
 *
 * The lexer here is the subset of BuildKit's shell lexer these two uses need: an empty
 * environment with unset variables kept verbatim, so `$x`, `${x}` and `${x:-w}` come out as
 * written (after quote/escape processing inside `w`). It is kept apart from the expansion module
 * because it must reproduce the word-splitting quirks BuildKit's heredoc detection depends on
 * (see `processStopOn`), and it runs nested `${...}` without recursion so a deeply nested line
 * cannot overflow the stack.
 */
import type { Heredoc } from './ast.js';
import { DockerfileError } from '../../errors.js';
import { goQuote, isGoDigit, isGoLetter, isSpace } from './gostr.js';

const EOF = -1;
const BACKSLASH = 0x5c;

/**
 * A lexing failure. Not an Error subclass: an error in a deeply nested `${...}` is rethrown once
 * per level, and capturing a stack trace each time would make that quadratic.
 */
class LexError {
  constructor(readonly message: string) {}
}

/** A sub-computation the trampoline in `run` executes before resuming the caller with its result. */
type Step<T> = Generator<Step<unknown>, T, unknown>;

function run<T>(root: Step<T>): T {
  const stack: Step<unknown>[] = [root];
  let value: unknown;
  let error: unknown;
  let failed = false;
  for (;;) {
    const top = stack[stack.length - 1]!;
    let r: IteratorResult<Step<unknown>, unknown>;
    try {
      if (failed) {
        failed = false;
        r = top.throw(error);
      } else {
        r = top.next(value);
      }
    } catch (e) {
      stack.pop();
      if (stack.length === 0) throw e;
      failed = true;
      error = e;
      continue;
    }
    if (r.done) {
      stack.pop();
      if (stack.length === 0) return r.value as T;
      value = r.value;
    } else {
      stack.push(r.value);
      value = undefined;
    }
  }
}

interface Words {
  words: string[];
  inWord: boolean;
}

function cpString(cp: number): string {
  return cp === EOF ? '\uFFFD' : String.fromCodePoint(cp);
}

function isSpecialParam(cp: number): boolean {
  // @ * # ? - $ ! 0
  return cp === 0x40 || cp === 0x2a || cp === 0x23 || cp === 0x3f || cp === 0x2d || cp === 0x24 || cp === 0x21 || cp === 0x30;
}

class Lexer {
  private pos = 0;
  private rawEscapes: boolean;
  /**
   * One word buffer shared by every nesting level, as in BuildKit: entering `${x:-...}` clears it,
   * so the part of a word before such an expression is lost (`a${x:-b}` lexes to the word
   * `${x:-b}`). Heredoc detection depends on this.
   */
  private buffer = '';

  constructor(
    private readonly src: string,
    private readonly rawQuotes: boolean,
    rawEscapes: boolean,
  ) {
    this.rawEscapes = rawEscapes;
    // Go's text/scanner drops a byte-order mark at the start of its input.
    if (src.charCodeAt(0) === 0xfeff) this.pos = 1;
  }

  private peek(): number {
    return this.pos < this.src.length ? this.src.codePointAt(this.pos)! : EOF;
  }

  private next(): number {
    const c = this.peek();
    if (c !== EOF) this.pos += c > 0xffff ? 2 : 1;
    return c;
  }

  private addChar(w: Words, cp: number): void {
    if (isSpace(cp) && w.inWord) {
      if (this.buffer.length !== 0) {
        w.words.push(this.buffer);
        this.buffer = '';
        w.inWord = false;
      }
    } else if (!isSpace(cp)) {
      this.addRawString(w, String.fromCodePoint(cp));
    }
  }

  private addRawString(w: Words, s: string): void {
    this.buffer += s;
    w.inWord = true;
  }

  private addString(w: Words, s: string): void {
    for (const ch of s) this.addChar(w, ch.codePointAt(0)!);
  }

  private getWords(w: Words): string[] {
    if (this.buffer.length > 0) {
      w.words.push(this.buffer);
      this.buffer = '';
      w.inWord = false;
    }
    return w.words;
  }

  /**
   * Lexes up to `stopChar` (consumed) or the end of input; returns the text and the words.
   *
   * Only the outermost level's words are ever used (a nested level, inside `${...}`, contributes
   * its text); its one effect on the word buffer is to leave it empty, which is reproduced without
   * splitting its text into words. Splitting every nested level's text, as a literal transcription
   * would, costs time quadratic in the nesting depth.
   */
  *processStopOn(stopChar: number, rawEscapes: boolean): Step<{ result: string; words: string[] }> {
    let result = '';
    this.buffer = '';
    const track = stopChar === EOF;
    const w: Words = { words: [], inWord: false };
    const restore = rawEscapes !== this.rawEscapes;
    if (restore) this.rawEscapes = rawEscapes;
    try {
      while (this.peek() !== EOF) {
        const ch = this.peek();
        if (stopChar !== EOF && ch === stopChar) {
          this.next();
          this.buffer = '';
          return { result, words: [] };
        }
        if (ch === 0x24 /* $ */) {
          const tmp = (yield this.processDollar()) as string;
          result += tmp;
          if (track) this.addString(w, tmp);
        } else if (ch === 0x3c /* < */) {
          const tmp = this.processPossibleHeredoc();
          result += tmp;
          if (track) this.addRawString(w, tmp);
        } else if (ch === 0x27 /* ' */) {
          const tmp = this.processSingleQuote();
          result += tmp;
          if (track) this.addRawString(w, tmp);
        } else if (ch === 0x22 /* " */) {
          const tmp = (yield this.processDoubleQuote()) as string;
          result += tmp;
          if (track) this.addRawString(w, tmp);
        } else {
          let c = this.next();
          if (c === BACKSLASH) {
            if (this.rawEscapes) {
              if (track) this.addRawString(w, '\\');
              result += '\\';
            }
            c = this.next();
            if (c === EOF) break;
            if (track) this.addRawString(w, String.fromCodePoint(c));
          } else if (track) {
            this.addChar(w, c);
          }
          result += String.fromCodePoint(c);
        }
      }
      if (stopChar !== EOF) {
        throw new LexError(`unexpected end of statement while looking for matching ${cpString(stopChar)}`);
      }
      return { result, words: this.getWords(w) };
    } finally {
      if (restore) this.rawEscapes = !rawEscapes;
    }
  }

  private processSingleQuote(): string {
    let result = '';
    this.next();
    if (this.rawQuotes) result += "'";
    for (;;) {
      const ch = this.next();
      if (ch === EOF) throw new LexError('unexpected end of statement while looking for matching single-quote');
      if (ch === 0x27) {
        if (this.rawQuotes) result += "'";
        return result;
      }
      result += String.fromCodePoint(ch);
    }
  }

  private *processDoubleQuote(): Step<string> {
    let result = '';
    this.next();
    if (this.rawQuotes) result += '"';
    for (;;) {
      const p = this.peek();
      if (p === EOF) throw new LexError('unexpected end of statement while looking for matching double-quote');
      if (p === 0x22) {
        this.next();
        if (this.rawQuotes) result += '"';
        return result;
      }
      if (p === 0x24) {
        result += (yield this.processDollar()) as string;
        continue;
      }
      let ch = this.next();
      if (ch === BACKSLASH) {
        if (this.rawEscapes) result += '\\';
        const q = this.peek();
        if (q === EOF) continue;
        if (q === 0x22 || q === 0x24 || q === BACKSLASH) ch = this.next();
      }
      result += String.fromCodePoint(ch);
    }
  }

  private *processDollar(): Step<string> {
    this.next();
    if (this.peek() !== 0x7b /* { */) {
      const name = this.processName();
      // No environment: a variable stays as written.
      return name === '' ? '$' : '$' + name;
    }
    this.next();
    const p = this.peek();
    if (p === EOF) throw new LexError("syntax error: missing '}'");
    if (p === 0x7b || p === 0x7d || p === 0x3a) throw new LexError('syntax error: bad substitution');
    const name = this.processName();
    let ch = this.next();
    let chs = cpString(ch);
    let nullIsUnset = false;
    if (ch === 0x7d) return '${' + name + '}';
    if (ch === 0x3a /* : */) {
      nullIsUnset = true;
      ch = this.next();
      chs += cpString(ch);
    }
    if (nullIsUnset || ch === 0x2b || ch === 0x2d || ch === 0x3f || ch === 0x23 || ch === 0x25) {
      const rawEscapes = ch === 0x23 || ch === 0x25;
      if (nullIsUnset && rawEscapes) throw new LexError(`unsupported modifier (${chs}) in substitution`);
      let word: string;
      try {
        word = ((yield this.processStopOn(0x7d, rawEscapes)) as { result: string }).result;
      } catch (e) {
        if (this.peek() === EOF) throw new LexError("syntax error: missing '}'");
        throw e;
      }
      return '${' + name + chs + word + '}';
    }
    if (ch === 0x2f /* / */) {
      if (this.peek() === 0x2f) this.next();
      let pattern: string;
      try {
        pattern = ((yield this.processStopOn(0x2f, true)) as { result: string }).result;
      } catch (e) {
        if (this.peek() === EOF) throw new LexError("syntax error: missing '/' in ${}");
        throw e;
      }
      let replacement: string;
      try {
        replacement = ((yield this.processStopOn(0x7d, true)) as { result: string }).result;
      } catch (e) {
        if (this.peek() === EOF) throw new LexError("syntax error: missing '}'");
        throw e;
      }
      return '${' + name + '/' + pattern + '/' + replacement + '}';
    }
    throw new LexError(`unsupported modifier (${chs}) in substitution`);
  }

  private processName(): string {
    let name = '';
    while (this.peek() !== EOF) {
      const ch = this.peek();
      if (name === '' && isGoDigit(ch)) {
        while (this.peek() !== EOF && isGoDigit(this.peek())) name += String.fromCodePoint(this.next());
        return name;
      }
      if (name === '' && isSpecialParam(ch)) {
        this.next();
        return String.fromCodePoint(ch);
      }
      if (!isGoLetter(ch) && !isGoDigit(ch) && ch !== 0x5f) break;
      name += String.fromCodePoint(this.next());
    }
    return name;
  }

  private processPossibleHeredoc(): string {
    this.next();
    if (this.peek() !== 0x3c) return '<';
    this.next();
    let space = '';
    for (let c = this.peek(); c === 0x09 || c === 0x0d || c === 0x20; c = this.peek()) {
      space += String.fromCodePoint(this.next());
    }
    return '<<' + space;
  }

  words(): string[] {
    return run(this.processStopOn(EOF, this.rawEscapes)).words;
  }
}

/**
 * Shell word splitting without expansion, as BuildKit's lexer does it with an empty environment
 * and unset variables kept. Throws DockerfileError (message as BuildKit's) on a lexing error.
 */
export function lexWords(src: string, options: { rawQuotes: boolean; rawEscapes: boolean }): string[] {
  try {
    return new Lexer(src, options.rawQuotes, options.rawEscapes).words();
  } catch (e) {
    if (e instanceof LexError) throw new DockerfileError(`failed to process ${goQuote(src)}: ${e.message}`);
    throw e;
  }
}

/** Matches `^(\d*)<<(-?)\s*([^<]*)$` (Go RE2: `\d` ASCII digits, `\s` `[\t\n\f\r ]`). */
function matchHeredocWord(word: string): { fd: string; chomp: boolean; rest: string } | undefined {
  let i = 0;
  while (i < word.length && word.charCodeAt(i) >= 0x30 && word.charCodeAt(i) <= 0x39) i++;
  if (word.charCodeAt(i) !== 0x3c || word.charCodeAt(i + 1) !== 0x3c) return undefined;
  const fd = word.slice(0, i);
  i += 2;
  const chomp = word.charCodeAt(i) === 0x2d;
  if (chomp) i++;
  for (let c = word.charCodeAt(i); c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0c || c === 0x0d; ) {
    c = word.charCodeAt(++i);
  }
  const rest = word.slice(i);
  return rest.includes('<') ? undefined : { fd, chomp, rest };
}

/** `strconv.ParseUint(s, 10, 0)` with the error ignored: "" is 0, an overflow is the maximum. */
function parseFd(digits: string): number {
  if (digits === '') return 0;
  const n = BigInt(digits);
  return Number(n > 0xffffffffffffffffn ? 0xffffffffffffffffn : n);
}

function quoteCount(s: string): number {
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 0x27 || c === 0x22) n++;
  }
  return n;
}

/**
 * BuildKit's ParseHeredoc: `word` as a heredoc start (`<<EOF`, `3<<-'EOF'`, `<< EOF`), or
 * `undefined` when it is not one. Throws DockerfileError when the delimiter can't be lexed
 * (an unterminated quote). `content` is empty; the parser fills it.
 */
export function parseHeredocWord(word: string): Heredoc | undefined {
  const m = matchHeredocWord(word);
  if (!m || m.rest === '') return undefined;
  const words = lexWords(m.rest, { rawQuotes: false, rawEscapes: false });
  if (words.length !== 1) return undefined;
  const raw = lexWords(m.rest, { rawQuotes: true, rawEscapes: false });
  if (raw.length !== words.length) {
    throw new DockerfileError(`internal lexing of heredoc produced inconsistent results: ${m.rest}`);
  }
  return {
    name: words[0]!,
    fileDescriptor: parseFd(m.fd),
    // Quotes anywhere in the delimiter (`<<'EOF'`, `<<E"O"F`) turn expansion off.
    expand: quoteCount(words[0]!) === quoteCount(raw[0]!),
    chomp: m.chomp,
    content: '',
  };
}

/**
 * BuildKit's heredocsFromLine: the heredocs started on an instruction line, in order. A line that
 * can't be lexed at all (an unterminated quote elsewhere on it) has none.
 */
export function heredocsFromLine(line: string): Heredoc[] {
  let words: string[];
  try {
    words = lexWords(line, { rawQuotes: true, rawEscapes: true });
  } catch (e) {
    if (e instanceof DockerfileError) return [];
    throw e;
  }
  const out: Heredoc[] = [];
  for (const word of words) {
    const h = parseHeredocWord(word);
    if (h) out.push(h);
  }
  return out;
}

/** BuildKit's ChompHeredocContent: removes the leading tabs of every line (for `<<-`). */
export function chompHeredocContent(src: string): string {
  return src
    .split('\n')
    .map((line) => line.replace(/^\t+/, ''))
    .join('\n');
}
