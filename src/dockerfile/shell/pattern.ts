/**
 * Patterns of `${VAR#pat}`, `${VAR%pat}` and `${VAR/pat/repl}`, with BuildKit's dialect of shell
 * patterns: `*` is any run of characters, `?` any one character, `\*` `\?` `\\` are literal, `\}` and
 * `\/` drop the backslash, and any other backslash sequence is an error. Bracket expressions are not
 * part of the dialect: `[` and `]` are ordinary characters, as in BuildKit. BuildKit compiles a
 * pattern to a Go regexp, so `*` and `?` never match a newline (`.` without the `s` flag) and, where
 * several matches are possible, the one a backtracking engine would find first wins.
 *
 * Neither a JS RegExp nor minimatch is used: `[`/`]` would have to be escaped anyway, minimatch knows
 * nothing of greedy versus shortest matches, and a backtracking RegExp over `*a*a*a*b` is exponential
 * in the worst case. Instead a pattern is split at its stars into fixed-length segments and matched
 * by a depth-first search over star lengths (the order a backtracking engine tries them in) that
 * remembers failed positions, which bounds the work by pattern length times value length.
 */

/** A segment element: a code point to match literally, or ANY for `?`. */
const ANY = -1;
const NEWLINE = 0x0a;
const BACKSLASH = 0x5c;
const BOM = 0xfeff;

/** A pattern that does not follow the dialect; the message is BuildKit's wording. */
export class PatternSyntaxError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PatternSyntaxError';
  }
}

/** The code points of a string (lone surrogates are kept as they are). */
export function codePoints(s: string): number[] {
  const out: number[] = [];
  for (let i = 0; i < s.length; ) {
    const cp = s.codePointAt(i)!;
    out.push(cp);
    i += cp > 0xffff ? 2 : 1;
  }
  return out;
}

function fromCodePoints(cps: readonly number[], start = 0, end = cps.length): string {
  let out = '';
  // In chunks: String.fromCodePoint with a spread of a very long array would overflow the stack.
  for (let i = start; i < end; i += 4096) out += String.fromCodePoint(...cps.slice(i, Math.min(end, i + 4096)));
  return out;
}

export class ShellPattern {
  /**
   * `segments[0] * segments[1] * ... * segments[n]`: the fixed parts between stars, so the pattern
   * has `segments.length - 1` stars.
   */
  private constructor(private readonly segments: readonly (readonly number[])[]) {}

  /** Parses a pattern written in BuildKit's dialect; throws PatternSyntaxError. */
  static parse(pattern: string): ShellPattern {
    const cps = codePoints(pattern);
    // BuildKit reads the pattern with Go's text/scanner, which skips a byte-order mark that is the
    // very first character.
    let i = cps[0] === BOM ? 1 : 0;
    const segments: number[][] = [[]];
    let cur = segments[0]!;
    while (i < cps.length) {
      const c = cps[i++]!;
      if (c === 0x2a /* * */) {
        cur = [];
        segments.push(cur);
      } else if (c === 0x3f /* ? */) {
        cur.push(ANY);
      } else if (c === BACKSLASH) {
        const n = cps[i];
        // `\}` and `\/` are how the delimiters of ${...} are written inside it; the backslash is
        // not part of the pattern.
        if (n === 0x7d /* } */ || n === 0x2f /* / */) continue;
        i++;
        if (n !== 0x2a && n !== 0x3f && n !== BACKSLASH) {
          // At the end of the pattern Go formats the missing character as U+FFFD.
          throw new PatternSyntaxError(`invalid escape '\\${n === undefined ? '\uFFFD' : String.fromCodePoint(n)}'`);
        }
        cur.push(n);
      } else {
        cur.push(c);
      }
    }
    return new ShellPattern(segments);
  }

  /** How many stars the pattern has. */
  get stars(): number {
    return this.segments.length - 1;
  }

  /**
   * The Go regular expression BuildKit builds for this pattern (for diagnostics and for checking
   * the translation against BuildKit's own table); matching never uses it.
   */
  regexpSource(greedy: boolean, anchored: boolean): string {
    let out = anchored ? '^' : '';
    this.segments.forEach((seg, k) => {
      if (k > 0) out += greedy ? '.*' : '.*?';
      for (const a of seg) {
        if (a === ANY) out += '.';
        else {
          const ch = String.fromCodePoint(a);
          out += '*?\\[]{}.+()|^$'.includes(ch) ? `\\${ch}` : ch;
        }
      }
    });
    return out;
  }

  /** A matcher over one value; reuse it for several searches in the same value. */
  matcher(value: readonly number[], greedy: boolean): PatternMatcher {
    return new PatternMatcher(this.segments, value, greedy);
  }
}

/**
 * Leftmost-first matching of a ShellPattern against one value. Star `k` starting at position `p`
 * can end anywhere from `p` to the end of that line; the search tries those ends longest-first
 * (greedy) or shortest-first, exactly as a backtracking regexp engine would. Whether the rest of the
 * pattern can match from (star k, position p) does not depend on how p was reached, and if it cannot,
 * it cannot from any later position on the same line either (those have fewer choices). So each
 * (star, candidate end) pair is tried at most once over all searches in the value.
 */
export class PatternMatcher {
  /** lineEnd[i]: index of the first newline at or after i, or the value's length. */
  private readonly lineEnd: Int32Array;
  /** Per star: line end -> smallest start position known to fail on that line. */
  private readonly failedFrom: Map<number, number>[];
  // Search stack, one frame per star: start position, next candidate, last candidate.
  private readonly fStart: Int32Array;
  private readonly fNext: Int32Array;
  private readonly fLimit: Int32Array;

  constructor(
    private readonly segments: readonly (readonly number[])[],
    private readonly value: readonly number[],
    private readonly greedy: boolean,
  ) {
    const n = value.length;
    this.lineEnd = new Int32Array(n + 1);
    let end = n;
    this.lineEnd[n] = n;
    for (let i = n - 1; i >= 0; i--) {
      if (value[i] === NEWLINE) end = i;
      this.lineEnd[i] = end;
    }
    const stars = segments.length - 1;
    this.failedFrom = Array.from({ length: stars + 1 }, () => new Map<number, number>());
    this.fStart = new Int32Array(stars + 1);
    this.fNext = new Int32Array(stars + 1);
    this.fLimit = new Int32Array(stars + 1);
  }

  private segmentAt(k: number, q: number): boolean {
    const seg = this.segments[k]!;
    const v = this.value;
    if (q + seg.length > v.length) return false;
    for (let i = 0; i < seg.length; i++) {
      const a = seg[i]!;
      const c = v[q + i]!;
      if (a === ANY ? c === NEWLINE : a !== c) return false;
    }
    return true;
  }

  /** Starts the search for star k at position p; false when it is already known to fail. */
  private openFrame(k: number, p: number): boolean {
    const line = this.lineEnd[p]!;
    const known = this.failedFrom[k]!.get(line);
    if (known !== undefined && known <= p) return false;
    const last = known === undefined ? line : known - 1;
    this.fStart[k] = p;
    if (this.greedy) {
      this.fNext[k] = last;
      this.fLimit[k] = p;
    } else {
      this.fNext[k] = p;
      this.fLimit[k] = last;
    }
    return true;
  }

  /** The end of the leftmost-first match starting exactly at `start`, or -1. */
  matchAt(start: number): number {
    if (!this.segmentAt(0, start)) return -1;
    const stars = this.segments.length - 1;
    const first = start + this.segments[0]!.length;
    if (stars === 0) return first;
    if (!this.openFrame(1, first)) return -1;
    let k = 1;
    const step = this.greedy ? -1 : 1;
    while (k > 0) {
      const next = this.fNext[k]!;
      const exhausted = this.greedy ? next < this.fLimit[k]! : next > this.fLimit[k]!;
      if (exhausted) {
        // Every end for this star failed: remember it, and resume the previous star.
        const p = this.fStart[k]!;
        this.failedFrom[k]!.set(this.lineEnd[p]!, p);
        k--;
        continue;
      }
      this.fNext[k] = next + step;
      if (!this.segmentAt(k, next)) continue;
      const after = next + this.segments[k]!.length;
      if (k === stars) return after;
      if (this.openFrame(k + 1, after)) k++;
    }
    return -1;
  }

  /** The leftmost-first match at or after `from`, as [start, end), or undefined. */
  find(from: number): [number, number] | undefined {
    for (let s = from; s <= this.value.length; s++) {
      const e = this.matchAt(s);
      if (e >= 0) return [s, e];
    }
    return undefined;
  }
}

/**
 * Reverses a pattern so that a suffix search can run as a prefix search, keeping each backslash in
 * front of the character it escapes (`a\*c` -> `c\*a`). A trailing lone backslash ends up first.
 */
export function reversePattern(pattern: string): string {
  const cps = codePoints(pattern);
  const out = new Array<number>(cps.length);
  const last = cps.length - 1;
  for (let i = 0; i <= last; ) {
    const c = cps[i]!;
    const o = last - i;
    if (c === BACKSLASH && i !== last) {
      out[o - 1] = c;
      out[o] = cps[i + 1]!;
      i += 2;
    } else {
      out[o] = c;
      i++;
    }
  }
  return fromCodePoints(out);
}

/** `${VAR#pat}` / `${VAR##pat}`: removes the shortest / longest prefix of `value` matching `pattern`. */
export function trimPrefix(pattern: ShellPattern, value: string, greedy: boolean): string {
  const v = codePoints(value);
  const end = pattern.matcher(v, greedy).matchAt(0);
  return end <= 0 ? value : fromCodePoints(v, end);
}

/**
 * `${VAR%pat}` / `${VAR%%pat}`: removes the shortest / longest suffix matching. `reversed` is the
 * pattern parsed from reversePattern(pat): the search runs on the reversed value, which turns the
 * rightmost shortest match (something leftmost-first engines cannot look for) into a leftmost one.
 */
export function trimSuffix(reversed: ShellPattern, value: string, greedy: boolean): string {
  const v = codePoints(value).reverse();
  const end = reversed.matcher(v, greedy).matchAt(0);
  if (end <= 0) return value;
  return fromCodePoints(v.slice(end).reverse());
}

/** `${VAR/pat/repl}`: replaces the first (leftmost, longest-first) match; `repl` is literal. */
export function replaceFirst(pattern: ShellPattern, value: string, replacement: string): string {
  const v = codePoints(value);
  const m = pattern.matcher(v, true).find(0);
  if (!m) return value;
  return fromCodePoints(v, 0, m[0]) + replacement + fromCodePoints(v, m[1]);
}

/** Thrown by replaceAll when the result would exceed the given size. */
export class ExpansionTooLargeError extends Error {}

/**
 * `${VAR//pat/repl}`: replaces every match the way Go's Regexp.ReplaceAllString does, which is what
 * BuildKit calls: after an empty match the search moves on by one character, an empty match right
 * after a previous match is not replaced, and the replacement is a Go regexp template (see
 * expandTemplate).
 */
export function replaceAll(pattern: ShellPattern, value: string, template: string, maxLength = Infinity): string {
  const v = codePoints(value);
  const m = pattern.matcher(v, true);
  const parts: string[] = [];
  let length = 0;
  let lastEnd = 0;
  let pos = 0;
  while (pos <= v.length) {
    const found = m.find(pos);
    if (!found) break;
    const [start, end] = found;
    if (start > lastEnd) {
      const piece = fromCodePoints(v, lastEnd, start);
      parts.push(piece);
      length += piece.length;
    }
    if (end > lastEnd || start === 0) {
      const piece = expandTemplate(template, () => fromCodePoints(v, start, end));
      parts.push(piece);
      length += piece.length;
    }
    if (length > maxLength) throw new ExpansionTooLargeError();
    lastEnd = end;
    pos = pos + 1 > end ? pos + 1 : end;
  }
  if (lastEnd < v.length) parts.push(fromCodePoints(v, lastEnd));
  return parts.join('');
}

const NAME_CHAR = /^[\p{L}\p{Nd}_]$/u;

/**
 * A Go regexp replacement template for a pattern without capture groups: `$$` is `$`, `$0` / `${0}`
 * is the whole match, any other `$name` / `${name}` (letters, digits, `_`) is empty, and a `$` that
 * starts neither is literal.
 */
export function expandTemplate(template: string, match: () => string): string {
  if (!template.includes('$')) return template;
  const t = Array.from(template);
  let out = '';
  let i = 0;
  while (i < t.length) {
    const c = t[i]!;
    if (c !== '$') {
      out += c;
      i++;
      continue;
    }
    i++;
    if (t[i] === '$') {
      out += '$';
      i++;
      continue;
    }
    let j = i;
    const brace = t[j] === '{';
    if (brace) j++;
    const nameStart = j;
    while (j < t.length && NAME_CHAR.test(t[j]!)) j++;
    const name = t.slice(nameStart, j).join('');
    if (name === '' || (brace && t[j] !== '}')) {
      out += '$';
      continue;
    }
    if (brace) j++;
    if (name === '0') out += match();
    i = j;
  }
  return out;
}
