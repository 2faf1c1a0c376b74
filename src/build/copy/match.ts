/**
 * COPY source wildcards with the semantics of Go's path.Match (which fsutil's copier uses):
 * `*` is any run of characters other than `/`, `?` one character other than `/`, `[...]` a class
 * (`^` negates, `a-z` ranges, `\` escapes), `\x` a literal x. A malformed pattern matches nothing,
 * as fsutil ignores the error.
 */

/** Whether `name` contains an unescaped `*`, `?` or `[` (fsutil's containsWildcards). */
export function containsWildcards(name: string): boolean {
  for (let i = 0; i < name.length; i++) {
    const c = name[i];
    if (c === '\\') i++;
    else if (c === '*' || c === '?' || c === '[') return true;
  }
  return false;
}

/**
 * Splits a clean absolute path at its first component with a wildcard: the literal directory to
 * start from, and the relative pattern for what is below it (fsutil's splitWildcards).
 */
export function splitWildcards(path: string): { dir: string; pattern: string } {
  const parts = path.split('/').filter((p) => p !== '');
  const i = parts.findIndex((p) => containsWildcards(p));
  if (i < 0) return { dir: path, pattern: '' };
  return { dir: '/' + parts.slice(0, i).join('/'), pattern: parts.slice(i).join('/') };
}

const compiled = new Map<string, RegExp | null>();

/** Go path.Match(pattern, name); false for a malformed pattern. */
export function goMatch(pattern: string, name: string): boolean {
  let re = compiled.get(pattern);
  if (re === undefined) {
    re = compile(pattern);
    if (compiled.size > 1000) compiled.clear();
    compiled.set(pattern, re);
  }
  return re !== null && re.test(name);
}

function lit(cp: number): string {
  return `\\u{${cp.toString(16)}}`;
}

function compile(pattern: string): RegExp | null {
  const cps = Array.from(pattern, (c) => c.codePointAt(0)!);
  let re = '^';
  let i = 0;
  const BACKSLASH = 0x5c;
  while (i < cps.length) {
    const c = cps[i]!;
    if (c === 0x2a /* * */) {
      re += '[^/]*';
      i++;
    } else if (c === 0x3f /* ? */) {
      re += '[^/]';
      i++;
    } else if (c === BACKSLASH) {
      if (i + 1 >= cps.length) return null;
      re += lit(cps[i + 1]!);
      i += 2;
    } else if (c === 0x5b /* [ */) {
      i++;
      let negated = false;
      if (cps[i] === 0x5e /* ^ */) {
        negated = true;
        i++;
      }
      const ranges: Array<[number, number]> = [];
      let n = 0;
      for (;;) {
        if (i < cps.length && cps[i] === 0x5d /* ] */ && n > 0) {
          i++;
          break;
        }
        const lo = classChar();
        if (lo === undefined) return null;
        let hi = lo;
        if (cps[i] === 0x2d /* - */) {
          i++;
          const h = classChar();
          if (h === undefined) return null;
          hi = h;
        }
        // A reversed range is valid in Go and matches nothing.
        if (lo <= hi) ranges.push([lo, hi]);
        n++;
      }
      const body = ranges.map(([lo, hi]) => (lo === hi ? lit(lo) : `${lit(lo)}-${lit(hi)}`)).join('');
      if (body === '') re += negated ? '[^]' : '[]';
      else re += `[${negated ? '^' : ''}${body}]`;
    } else {
      re += lit(c);
      i++;
    }
  }
  return new RegExp(re + '$', 'u');

  /** One class member: a character other than `-` and `]`, or an escaped one; not the pattern's end. */
  function classChar(): number | undefined {
    if (i >= cps.length) return undefined;
    let c = cps[i]!;
    if (c === 0x2d || c === 0x5d) return undefined;
    if (c === BACKSLASH) {
      i++;
      if (i >= cps.length) return undefined;
      c = cps[i]!;
    }
    i++;
    if (i >= cps.length) return undefined;
    return c;
  }
}
