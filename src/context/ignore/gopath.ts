/**
 * Small string helpers that reproduce the Go standard-library functions BuildKit applies to
 * .dockerignore patterns and context paths. They matter because Go and JavaScript disagree in
 * details that change results: `strings.TrimSpace` and `String.prototype.trim` strip different
 * characters, Node's `path.posix.normalize` keeps trailing slashes and leading `..` differently
 * from `path.Clean`, and `os.ReadDir` sorts by bytes while `Array.prototype.sort` sorts by UTF-16
 * code units.
 */

/**
 * Characters Go's `unicode.IsSpace` accepts (the Unicode White_Space property). Unlike JS `trim()`
 * this includes U+0085 and excludes U+FEFF, so a BOM in the middle of an ignore file is kept.
 */
const GO_SPACE = '\\t\\n\\v\\f\\r \\u0085\\u00A0\\u1680\\u2000-\\u200A\\u2028\\u2029\\u202F\\u205F\\u3000';
const GO_TRIM = new RegExp(`^[${GO_SPACE}]+|[${GO_SPACE}]+$`, 'g');

/** Go `strings.TrimSpace`. */
export function goTrimSpace(s: string): string {
  return s.replace(GO_TRIM, '');
}

/**
 * Go `path.Clean` (which is `filepath.Clean` on Linux): collapse `//`, drop `.` elements, resolve
 * `..` against preceding elements, drop `..` directly under the root, remove trailing slashes;
 * the empty result is `.`.
 */
export function goClean(p: string): string {
  if (isClean(p)) return p;
  if (p === '') return '.';
  const rooted = p.charCodeAt(0) === 0x2f;
  const out: string[] = [];
  for (const part of p.split('/')) {
    if (part === '' || part === '.') continue;
    if (part === '..') {
      if (out.length > 0 && out[out.length - 1] !== '..') out.pop();
      else if (!rooted) out.push('..');
      continue;
    }
    out.push(part);
  }
  const joined = out.join('/');
  if (rooted) return '/' + joined;
  return joined === '' ? '.' : joined;
}

/**
 * Whether `path.Clean` would return `p` unchanged: no empty, `.` or `..` elements and no trailing
 * slash. Paths from a directory walk always are, so matching skips the general algorithm.
 */
function isClean(p: string): boolean {
  const n = p.length;
  if (n === 0) return false;
  let start = p.charCodeAt(0) === 0x2f ? 1 : 0;
  if (start === 1 && n === 1) return true;
  for (let i = start; i <= n; i++) {
    if (i < n && p.charCodeAt(i) !== 0x2f) continue;
    const len = i - start;
    if (len === 0) return false;
    if (p.charCodeAt(start) === 0x2e && (len === 1 || (len === 2 && p.charCodeAt(start + 1) === 0x2e))) return false;
    start = i + 1;
  }
  return true;
}

/** Go `path.Dir`: everything up to the last slash, cleaned; `.` when there is no slash. */
export function goDir(p: string): string {
  const i = p.lastIndexOf('/');
  return goClean(i < 0 ? '' : p.slice(0, i + 1));
}

/**
 * Orders names the way Go's `os.ReadDir` does: by UTF-8 bytes, which is code point order. JS
 * string comparison uses UTF-16 code units and puts astral characters (surrogates, 0xD800..)
 * before U+E000..U+FFFF; only then do the two orders differ, so the common case stays a plain
 * comparison.
 */
export function compareNames(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a.charCodeAt(i);
    const y = b.charCodeAt(i);
    if (x === y) continue;
    if (x >= 0xd800 && y >= 0xd800) {
      // Surrogates (astral code points) sort after every BMP character in code point order.
      const xs = x <= 0xdfff;
      const ys = y <= 0xdfff;
      if (xs !== ys) return xs ? 1 : -1;
    }
    return x < y ? -1 : 1;
  }
  return a.length - b.length;
}
