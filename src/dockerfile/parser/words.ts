/**
 * Splitting an instruction line into keyword, `--flags` and arguments, and the quote-aware word
 * splitter used for ENV/LABEL/ARG arguments, with BuildKit's exact rules.
 */
import { isSpace, isSpaceByte, splitBlanksOnce, trimSpace } from './gostr.js';

export type EscapeToken = '\\' | '`';

/**
 * BuildKit's parseWords: splits on white space, keeping quotes and escapes in the words
 * (`foo "a b"` -> `foo`, `"a b"`); an escape token at the very end is dropped.
 *
 * Every character of a word is kept except that final escape token, so words are taken as slices
 * of `rest` between the boundaries the state machine finds.
 */
export function parseWords(rest: string, escapeToken: EscapeToken = '\\'): string[] {
  const IN_SPACES = 0;
  const IN_WORD = 1;
  const IN_QUOTE = 2;
  const esc = escapeToken.charCodeAt(0);
  const words: string[] = [];
  const n = rest.length;
  let phase = IN_SPACES;
  let quote = 0;
  let start = 0;
  let pos = 0;
  while (pos <= n) {
    if (phase === IN_SPACES) {
      if (pos === n) break;
      if (isSpace(rest.charCodeAt(pos))) {
        pos++;
        continue;
      }
      phase = IN_WORD;
      start = pos;
    }
    if (pos === n) {
      words.push(rest.slice(start, n));
      break;
    }
    const ch = rest.charCodeAt(pos);
    if (phase === IN_WORD) {
      if (isSpace(ch)) {
        words.push(rest.slice(start, pos));
        phase = IN_SPACES;
        pos++;
        continue;
      }
      if (ch === 0x27 || ch === 0x22) {
        quote = ch;
        phase = IN_QUOTE;
      } else if (ch === esc) {
        if (pos + 1 === n) {
          // A trailing escape token is dropped (and with it a word made of nothing else).
          if (pos > start) words.push(rest.slice(start, pos));
          break;
        }
        // Outside quotes the escape and the character after it are both kept, even a quote.
        pos += charWidth(rest, pos + 1);
      }
      pos++;
      continue;
    }
    // IN_QUOTE; inside single quotes the escape token is an ordinary character.
    if (ch === quote) {
      phase = IN_WORD;
    } else if (ch === esc && quote !== 0x27) {
      if (pos + 1 === n) {
        words.push(rest.slice(start, pos));
        break;
      }
      pos += charWidth(rest, pos + 1);
    }
    pos++;
  }
  return words;
}

/** UTF-16 units of the character at `i` (2 for a surrogate pair). */
function charWidth(s: string, i: number): number {
  const c = s.charCodeAt(i);
  if (c >= 0xd800 && c <= 0xdbff) {
    const d = s.charCodeAt(i + 1);
    if (d >= 0xdc00 && d <= 0xdfff) return 2;
  }
  return 1;
}

/**
 * A cursor over the UTF-8 bytes of a string, without encoding the whole string: BuildKit walks
 * instruction lines byte by byte when extracting flags, and only the bytes it actually visits are
 * produced here (an ONBUILD chain re-scans the rest of the line once per level).
 */
class ByteCursor {
  /** Index (UTF-16) of the character whose bytes are in `bytes`. */
  private ci = 0;
  private readonly bytes: number[] = [];
  private bi = 0;

  constructor(private readonly s: string) {
    this.load();
  }

  private load(): void {
    this.bytes.length = 0;
    this.bi = 0;
    if (this.ci >= this.s.length) return;
    let cp = this.s.codePointAt(this.ci)!;
    if (cp >= 0xd800 && cp <= 0xdfff) cp = 0xfffd;
    if (cp < 0x80) this.bytes.push(cp);
    else if (cp < 0x800) this.bytes.push(0xc0 | (cp >> 6), 0x80 | (cp & 0x3f));
    else if (cp < 0x10000) this.bytes.push(0xe0 | (cp >> 12), 0x80 | ((cp >> 6) & 0x3f), 0x80 | (cp & 0x3f));
    else
      this.bytes.push(
        0xf0 | (cp >> 18),
        0x80 | ((cp >> 12) & 0x3f),
        0x80 | ((cp >> 6) & 0x3f),
        0x80 | (cp & 0x3f),
      );
  }

  private charWidth(): number {
    return this.bytes.length === 4 ? 2 : 1;
  }

  get atEnd(): boolean {
    return this.ci >= this.s.length;
  }

  get byte(): number {
    return this.bytes[this.bi]!;
  }

  /** True when the current byte is the last byte of the string. */
  get isLast(): boolean {
    return this.bi === this.bytes.length - 1 && this.ci + this.charWidth() >= this.s.length;
  }

  /** The byte after the current one, or -1 at the end. */
  peek(): number {
    if (this.bi + 1 < this.bytes.length) return this.bytes[this.bi + 1]!;
    const next = this.ci + this.charWidth();
    if (next >= this.s.length) return -1;
    const c = this.s.charCodeAt(next);
    return c < 0x80 ? c : 0x100; // any non-ASCII lead byte: never `-`
  }

  advance(): void {
    if (this.bi + 1 < this.bytes.length) {
      this.bi++;
      return;
    }
    this.ci += this.charWidth();
    this.load();
  }

  /**
   * The string from the current byte on. Starting inside a multi-byte character leaves invalid
   * UTF-8 in Go; a JavaScript string can't hold that, so each orphaned byte becomes U+FFFD.
   */
  rest(): string {
    if (this.bi === 0) return this.s.slice(this.ci);
    return '\uFFFD'.repeat(this.bytes.length - this.bi) + this.s.slice(this.ci + this.charWidth());
  }
}

/**
 * BuildKit's extractBuilderFlags: the leading words that start with `--` (quotes and escapes inside
 * them are processed and dropped); a bare `--` ends the flags and is dropped. Returns the flags and
 * the rest of the line.
 *
 * BuildKit scans bytes here, not characters: bytes 0x85 and 0xA0 end a flag word, and every byte
 * of a multi-byte character is added to the flag as its own Latin-1 character (so `--x=é` comes
 * out as `--x=Ã©`). Both quirks are reproduced so that flags match BuildKit's AST.
 */
export function extractBuilderFlags(line: string, escapeToken: EscapeToken = '\\'): { flags: string[]; rest: string } {
  const IN_SPACES = 0;
  const IN_WORD = 1;
  const IN_QUOTE = 2;
  // Fast path for the common case, a line whose first word is not a flag: up to that word only
  // ASCII blanks can have been skipped, so characters and bytes agree.
  let first = 0;
  while (first < line.length && line.charCodeAt(first) < 0x80 && isSpaceByte(line.charCodeAt(first))) first++;
  if (first === line.length) return { flags: [], rest: '' };
  if (line.charCodeAt(first) !== 0x2d || line.charCodeAt(first + 1) !== 0x2d) {
    return { flags: [], rest: line.slice(first) };
  }
  const esc = escapeToken.charCodeAt(0);
  const flags: string[] = [];
  const cur = new ByteCursor(line);
  let phase = IN_SPACES;
  let word = '';
  let quote = 0;
  let blankOK = false;
  for (; ; cur.advance()) {
    if (phase === IN_SPACES) {
      if (cur.atEnd) break;
      const ch = cur.byte;
      if (isSpaceByte(ch)) continue;
      if (ch !== 0x2d || cur.isLast || cur.peek() !== 0x2d) return { flags, rest: cur.rest() };
      phase = IN_WORD;
    }
    if (cur.atEnd) {
      if (word !== '--' && (blankOK || word.length > 0)) flags.push(word);
      break;
    }
    let ch = cur.byte;
    if (phase === IN_WORD) {
      if (isSpaceByte(ch)) {
        phase = IN_SPACES;
        if (word === '--') return { flags, rest: cur.rest() };
        if (blankOK || word.length > 0) flags.push(word);
        word = '';
        blankOK = false;
        continue;
      }
      if (ch === 0x27 || ch === 0x22) {
        quote = ch;
        blankOK = true;
        phase = IN_QUOTE;
        continue;
      }
      if (ch === esc) {
        if (cur.isLast) continue;
        cur.advance();
        ch = cur.byte;
      }
      word += String.fromCharCode(ch);
      continue;
    }
    // IN_QUOTE
    if (ch === quote) {
      phase = IN_WORD;
      continue;
    }
    if (ch === esc) {
      if (cur.isLast) {
        phase = IN_WORD;
        continue;
      }
      cur.advance();
      ch = cur.byte;
    }
    word += String.fromCharCode(ch);
  }
  return { flags, rest: '' };
}

export interface SplitCommand {
  /** The keyword as written. */
  cmd: string;
  flags: string[];
  /** The arguments after the flags, white space trimmed. */
  args: string;
}

/** BuildKit's splitCommand: keyword, flags and arguments of one (joined) instruction line. */
export function splitCommand(line: string, escapeToken: EscapeToken = '\\'): SplitCommand {
  const parts = splitBlanksOnce(trimSpace(line));
  if (parts.length === 1) return { cmd: parts[0], flags: [], args: '' };
  const { flags, rest } = extractBuilderFlags(parts[1], escapeToken);
  return { cmd: parts[0], flags, args: trimSpace(rest) };
}
