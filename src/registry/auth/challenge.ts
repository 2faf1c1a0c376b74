/**
 * `WWW-Authenticate` challenges (RFC 7235 §4.1, RFC 9110 §11.6.1): one header may carry several
 * challenges separated by commas, and a response may carry several headers, which Node joins with
 * commas. A challenge is a scheme followed by either a token68 or comma-separated `name=value`
 * parameters whose values are tokens or quoted strings with backslash escapes. The hard part is
 * that commas separate both parameters and challenges: a name followed by `=` continues the current
 * challenge, anything else starts the next one.
 */

export interface Challenge {
  /** Lower-cased: `basic`, `bearer`. */
  scheme: string;
  /** Parameter names lower-cased; values as sent (unquoted, unescaped). */
  params: Record<string, string>;
  /** The token68 form (`Negotiate abc==`), when the challenge used it. */
  token68?: string;
}

const TCHAR = /[!#$%&'*+\-.^_`|~0-9A-Za-z]/;
const TOKEN68CHAR = /[A-Za-z0-9\-._~+/]/;

class Scanner {
  pos = 0;
  constructor(readonly s: string) {}
  get done(): boolean {
    return this.pos >= this.s.length;
  }
  peek(): string {
    return this.s[this.pos] ?? '';
  }
  skipSpace(): void {
    while (this.peek() === ' ' || this.peek() === '\t') this.pos++;
  }
  /** Skips spaces and any number of empty list elements (`a, , b` is legal). */
  skipSeparators(): void {
    while (this.peek() === ' ' || this.peek() === '\t' || this.peek() === ',') this.pos++;
  }
  token(): string {
    const start = this.pos;
    while (!this.done && TCHAR.test(this.peek())) this.pos++;
    return this.s.slice(start, this.pos);
  }
  quoted(): string {
    // Assumes the opening quote is at pos. An unterminated string runs to the end (lenient, as
    // browsers and Go's parser are).
    this.pos++;
    let out = '';
    while (!this.done) {
      const c = this.s[this.pos++]!;
      if (c === '"') return out;
      if (c === '\\' && !this.done) out += this.s[this.pos++]!;
      else out += c;
    }
    return out;
  }
}

/** Parses a `WWW-Authenticate` value (or several joined by commas) into its challenges. */
export function parseChallenges(header: string | string[] | undefined): Challenge[] {
  if (header === undefined) return [];
  if (Array.isArray(header)) return header.flatMap((h) => parseChallenges(h));
  const sc = new Scanner(header);
  const out: Challenge[] = [];
  sc.skipSeparators();
  while (!sc.done) {
    const scheme = sc.token();
    if (!scheme) {
      // Garbage where a scheme should be: skip to the next comma and try again.
      while (!sc.done && sc.peek() !== ',') sc.pos++;
      sc.skipSeparators();
      continue;
    }
    const challenge: Challenge = { scheme: scheme.toLowerCase(), params: {} };
    out.push(challenge);
    sc.skipSpace();
    if (sc.done) break;
    if (sc.peek() === ',') {
      sc.skipSeparators();
      continue;
    }
    // token68: the rest up to a comma or the end is one opaque value, possibly `=`-padded.
    const t68 = tryToken68(sc);
    if (t68 !== undefined) {
      challenge.token68 = t68;
      sc.skipSeparators();
      continue;
    }
    // auth-params until something that is not `name=` begins the next challenge.
    for (;;) {
      const mark = sc.pos;
      const name = sc.token();
      sc.skipSpace();
      if (!name || sc.peek() !== '=') {
        sc.pos = mark;
        break;
      }
      sc.pos++;
      sc.skipSpace();
      const value = sc.peek() === '"' ? sc.quoted() : sc.token();
      challenge.params[name.toLowerCase()] = value;
      sc.skipSpace();
      if (sc.peek() !== ',') break;
      sc.skipSeparators();
    }
    sc.skipSeparators();
  }
  return out;
}

function tryToken68(sc: Scanner): string | undefined {
  const start = sc.pos;
  while (!sc.done && TOKEN68CHAR.test(sc.peek())) sc.pos++;
  if (sc.pos === start) return undefined;
  while (sc.peek() === '=') sc.pos++;
  const end = sc.pos;
  sc.skipSpace();
  // It was a token68 only if nothing but a list separator or the end follows; `name=value` has a
  // value after the `=`, which this check rejects.
  if (sc.done || sc.peek() === ',') return sc.s.slice(start, end);
  sc.pos = start;
  return undefined;
}

/** The first challenge of `scheme` (lower case), if any. */
export function findChallenge(challenges: Challenge[], scheme: string): Challenge | undefined {
  return challenges.find((c) => c.scheme === scheme);
}

/** Scopes a bearer challenge asks for (`scope` may hold several, separated by spaces). */
export function challengeScopes(challenge: Challenge | undefined): string[] {
  const scope = challenge?.params.scope;
  return scope ? scope.split(' ').filter(Boolean) : [];
}
