/**
 * String primitives with the exact semantics of the Go standard library functions BuildKit's parser
 * is built on. JavaScript's own versions differ in ways that change parse results: `String.trim()`
 * strips U+FEFF but not U+0085, `toLowerCase()` maps U+0130 to two characters, `split(re, 2)` drops
 * the remainder instead of keeping it, and there is no `strconv.Quote`. Every parser module uses
 * these instead of the built-ins so that the AST (and its dump) matches BuildKit byte for byte.
 */

/** Go `unicode.IsSpace`: the Unicode White_Space property (includes U+0085, U+00A0; not U+FEFF). */
export function isSpace(c: number): boolean {
  if (c <= 0xff) {
    return c === 0x20 || (c >= 0x09 && c <= 0x0d) || c === 0x85 || c === 0xa0;
  }
  return (
    c === 0x1680 ||
    (c >= 0x2000 && c <= 0x200a) ||
    c === 0x2028 ||
    c === 0x2029 ||
    c === 0x202f ||
    c === 0x205f ||
    c === 0x3000
  );
}

/**
 * `unicode.IsSpace(rune(b))` applied to a single UTF-8 byte, as BuildKit's flag extraction and
 * HEALTHCHECK splitting do: bytes 0x85 and 0xA0 count as blanks even though in UTF-8 they are only
 * ever continuation bytes of a multi-byte character.
 */
export function isSpaceByte(b: number): boolean {
  return b === 0x20 || (b >= 0x09 && b <= 0x0d) || b === 0x85 || b === 0xa0;
}

/** Go `strings.TrimSpace`. */
export function trimSpace(s: string): string {
  let start = 0;
  let end = s.length;
  while (start < end && isSpace(s.charCodeAt(start))) start++;
  while (end > start && isSpace(s.charCodeAt(end - 1))) end--;
  return start === 0 && end === s.length ? s : s.slice(start, end);
}

/** Go `strings.TrimLeftFunc(s, unicode.IsSpace)`. */
export function trimLeftSpace(s: string): string {
  let start = 0;
  while (start < s.length && isSpace(s.charCodeAt(start))) start++;
  return start === 0 ? s : s.slice(start);
}

/** BuildKit's `trimNewline`: `bytes.TrimRight(line, "\r\n")` (every trailing CR and LF). */
export function trimNewline(s: string): string {
  let end = s.length;
  while (end > 0) {
    const c = s.charCodeAt(end - 1);
    if (c !== 0x0a && c !== 0x0d) break;
    end--;
  }
  return end === s.length ? s : s.slice(0, end);
}

/** The blanks of BuildKit's `reWhitespace` (`[\t\v\f\r ]+`), which is narrower than `isSpace`. */
export function isBlank(c: number): boolean {
  return c === 0x20 || c === 0x09 || c === 0x0b || c === 0x0c || c === 0x0d;
}

/** `reWhitespace.Split(s, 2)`: the text before the first run of blanks and the text after it. */
export function splitBlanksOnce(s: string): [string] | [string, string] {
  for (let i = 0; i < s.length; i++) {
    if (isBlank(s.charCodeAt(i))) {
      let j = i + 1;
      while (j < s.length && isBlank(s.charCodeAt(j))) j++;
      return [s.slice(0, i), s.slice(j)];
    }
  }
  return [s];
}

/** `reWhitespace.Split(s, -1)`. */
export function splitBlanks(s: string): string[] {
  const out: string[] = [];
  let start = 0;
  let i = 0;
  while (i < s.length) {
    if (isBlank(s.charCodeAt(i))) {
      out.push(s.slice(start, i));
      while (i < s.length && isBlank(s.charCodeAt(i))) i++;
      start = i;
    } else {
      i++;
    }
  }
  out.push(s.slice(start));
  return out;
}

/** Go `strings.ToLower`: the simple (one rune to one rune) lower-case mapping of every rune. */
export function goToLower(s: string): string {
  let ascii = true;
  for (let i = 0; i < s.length; i++) {
    if (s.charCodeAt(i) > 0x7f) {
      ascii = false;
      break;
    }
  }
  if (ascii) return s.toLowerCase();
  let out = '';
  for (const ch of s) {
    const lower = ch.toLowerCase();
    // JavaScript applies the full mapping, which turns U+0130 into "i" + U+0307; Go maps it to "i".
    out += [...lower].length === 1 ? lower : ch === '\u0130' ? 'i' : ch;
  }
  return out;
}

/** Go `strings.ToUpper` (simple mapping); used for keyword comparisons only. */
export function goToUpper(s: string): string {
  let out = '';
  for (const ch of s) {
    const upper = ch.toUpperCase();
    out += [...upper].length === 1 ? upper : ch;
  }
  return out;
}

const printable = /^[\p{L}\p{M}\p{N}\p{P}\p{S}]$/u;

/** Go `unicode.IsPrint` (letters, marks, numbers, punctuation, symbols and the ASCII space). */
export function isPrint(cp: number): boolean {
  if (cp < 0x80) return cp >= 0x20 && cp < 0x7f;
  return printable.test(String.fromCodePoint(cp));
}

function hex(n: number, width: number): string {
  return n.toString(16).padStart(width, '0');
}

/**
 * Go `strconv.Quote`. Strings here are UTF-16; an unpaired surrogate (which a decoded file can't
 * contain) is rendered the way Go renders the three invalid bytes of its WTF-8 form.
 */
export function goQuote(s: string): string {
  let out = '"';
  for (let i = 0; i < s.length; i++) {
    let cp = s.charCodeAt(i);
    if (cp >= 0x20 && cp < 0x7f && cp !== 0x22 && cp !== 0x5c) {
      // Copy a run of plain printable ASCII in one piece.
      let j = i + 1;
      for (; j < s.length; j++) {
        const c = s.charCodeAt(j);
        if (c < 0x20 || c >= 0x7f || c === 0x22 || c === 0x5c) break;
      }
      out += s.slice(i, j);
      i = j - 1;
      continue;
    }
    if (cp >= 0xd800 && cp <= 0xdfff) {
      const lo = i + 1 < s.length ? s.charCodeAt(i + 1) : 0;
      if (cp <= 0xdbff && lo >= 0xdc00 && lo <= 0xdfff) {
        cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
        i++;
      } else {
        out += `\\x${hex(0xed, 2)}\\x${hex(0x80 | ((cp >> 6) & 0x3f), 2)}\\x${hex(0x80 | (cp & 0x3f), 2)}`;
        continue;
      }
    }
    if (cp === 0x22) out += '\\"';
    else if (cp === 0x5c) out += '\\\\';
    else if (isPrint(cp)) out += String.fromCodePoint(cp);
    else if (cp === 0x07) out += '\\a';
    else if (cp === 0x08) out += '\\b';
    else if (cp === 0x0c) out += '\\f';
    else if (cp === 0x0a) out += '\\n';
    else if (cp === 0x0d) out += '\\r';
    else if (cp === 0x09) out += '\\t';
    else if (cp === 0x0b) out += '\\v';
    else if (cp < 0x20 || cp === 0x7f) out += `\\x${hex(cp, 2)}`;
    else if (cp < 0x10000) out += `\\u${hex(cp, 4)}`;
    else out += `\\U${hex(cp, 8)}`;
  }
  return out + '"';
}

/** Number of bytes `s` takes in UTF-8 (an unpaired surrogate counts as three, like U+FFFD). */
export function utf8Length(s: string): number {
  return Buffer.byteLength(s, 'utf8');
}

/** Replaces unpaired surrogates with U+FFFD, as Go does when it decodes `\uD800` in JSON. */
export function toWellFormed(s: string): string {
  return s.replace(/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g, '\uFFFD');
}

/** Go `unicode.IsDigit` (decimal digits of any script). */
export function isGoDigit(cp: number): boolean {
  if (cp < 0x80) return cp >= 0x30 && cp <= 0x39;
  return /^\p{Nd}$/u.test(String.fromCodePoint(cp));
}

/** Go `unicode.IsLetter`. */
export function isGoLetter(cp: number): boolean {
  if (cp < 0x80) return (cp >= 0x41 && cp <= 0x5a) || (cp >= 0x61 && cp <= 0x7a);
  return /^\p{L}$/u.test(String.fromCodePoint(cp));
}
