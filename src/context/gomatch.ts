/**
 * Go's `path.Match`, which BuildKit uses to expand wildcards in COPY sources when it computes their
 * checksums, and the helpers that split a source path at its first wildcard. `.dockerignore`
 * patterns use a different matcher (patternmatcher, in `./ignore`); the two disagree on `**`, which
 * here is just two stars.
 */
import { ContextPatternError } from './errors.js';

type Token =
  | { readonly kind: 'star' }
  | { readonly kind: 'any' }
  | { readonly kind: 'char'; readonly cp: number }
  | { readonly kind: 'class'; readonly negated: boolean; readonly ranges: ReadonlyArray<readonly [number, number]> };

const SLASH = 0x2f;

/** Whether a path element or path has an unescaped `*`, `?` or `[` (BuildKit's `containsWildcards`). */
export function containsWildcards(name: string): boolean {
  for (let i = 0; i < name.length; i++) {
    const c = name[i];
    if (c === '\\') i++;
    else if (c === '*' || c === '?' || c === '[') return true;
  }
  return false;
}

/**
 * Splits a cleaned absolute path at the first element with a wildcard: `/src/*.ts` gives
 * `['/src', '*.ts']`, `/*` gives `['/', '*']`, a path without wildcards `[path, '']`.
 */
export function splitWildcards(p: string): [string, string] {
  const parts = p.split('/');
  const head: string[] = [];
  const tail: string[] = [];
  let found = false;
  for (const part of parts) {
    if (!found && containsWildcards(part)) found = true;
    (found ? tail : head).push(part);
  }
  const prefix = head.filter((s) => s !== '').join('/');
  return [p.startsWith('/') ? '/' + prefix : prefix, tail.filter((s) => s !== '').join('/')];
}

/**
 * A compiled `path.Match` pattern. Compilation checks the whole pattern, as Go does before it
 * reports a mismatch, so an invalid pattern fails even when nothing could match it.
 */
export class GoPattern {
  private readonly tokens: readonly Token[];

  /** @throws ContextPatternError for a malformed pattern. */
  constructor(readonly pattern: string) {
    this.tokens = compile(pattern);
  }

  /** Whether `name` matches the whole pattern; `*` and `?` never match `/`, classes may. */
  matches(name: string): boolean {
    const cps = Array.from(name, (ch) => ch.codePointAt(0)!);
    return matchFrom(this.tokens, 0, cps, 0);
  }
}

function compile(pattern: string): Token[] {
  const cps = Array.from(pattern, (ch) => ch.codePointAt(0)!);
  const bad = (): never => {
    throw new ContextPatternError(pattern);
  };
  const tokens: Token[] = [];
  let i = 0;
  /** One possibly escaped class member; `-` and `]` must be escaped where they would be ambiguous. */
  const classChar = (): number => {
    if (i >= cps.length) return bad();
    let c = cps[i]!;
    if (c === 0x2d /* - */ || c === 0x5d /* ] */) return bad();
    if (c === 0x5c /* \ */) {
      i++;
      if (i >= cps.length) return bad();
      c = cps[i]!;
    }
    if (c >= 0xd800 && c <= 0xdfff) return bad(); // not a character: Go rejects invalid UTF-8 here
    i++;
    return c;
  };
  while (i < cps.length) {
    const c = cps[i]!;
    if (c === 0x2a /* * */) {
      if (tokens[tokens.length - 1]?.kind !== 'star') tokens.push({ kind: 'star' });
      i++;
    } else if (c === 0x3f /* ? */) {
      tokens.push({ kind: 'any' });
      i++;
    } else if (c === 0x5b /* [ */) {
      i++;
      let negated = false;
      if (cps[i] === 0x5e /* ^ */) {
        negated = true;
        i++;
      }
      const ranges: Array<[number, number]> = [];
      for (;;) {
        if (i < cps.length && cps[i] === 0x5d && ranges.length > 0) {
          i++;
          break;
        }
        const lo = classChar();
        let hi = lo;
        if (cps[i] === 0x2d) {
          i++;
          hi = classChar();
        }
        ranges.push([lo, hi]);
      }
      tokens.push({ kind: 'class', negated, ranges });
    } else if (c === 0x5c /* \ */) {
      if (i + 1 >= cps.length) bad();
      tokens.push({ kind: 'char', cp: cps[i + 1]! });
      i += 2;
    } else {
      tokens.push({ kind: 'char', cp: c });
      i++;
    }
  }
  return tokens;
}

function matchFrom(tokens: readonly Token[], t: number, s: readonly number[], i: number): boolean {
  while (t < tokens.length) {
    const tok = tokens[t]!;
    if (tok.kind === 'star') {
      // Try every split of the remaining element; a star cannot cross `/`.
      for (let j = i; ; j++) {
        if (matchFrom(tokens, t + 1, s, j)) return true;
        if (j >= s.length || s[j] === SLASH) return false;
      }
    }
    if (i >= s.length) return false;
    const c = s[i]!;
    switch (tok.kind) {
      case 'any':
        if (c === SLASH) return false;
        break;
      case 'char':
        if (c !== tok.cp) return false;
        break;
      case 'class': {
        const inRange = tok.ranges.some(([lo, hi]) => lo <= c && c <= hi);
        if (inRange === tok.negated) return false;
        break;
      }
    }
    t++;
    i++;
  }
  return i === s.length;
}
