/**
 * Go `time.Duration` parsing and printing. HEALTHCHECK options are Go durations in BuildKit, and the
 * image history records them with Go's formatting, so both directions follow Go exactly
 * (including its overflow rules and error texts).
 */

const MAX = 1n << 63n;

const UNITS: Record<string, bigint> = {
  ns: 1n,
  us: 1_000n,
  '\u00b5s': 1_000n, // micro sign
  '\u03bcs': 1_000n, // Greek small letter mu
  ms: 1_000_000n,
  s: 1_000_000_000n,
  m: 60_000_000_000n,
  h: 3_600_000_000_000n,
};

/** Go's quoting in `time` errors: ASCII kept, `"` and `\` escaped, other bytes as `\xNN`. */
function goTimeQuote(s: string): string {
  let out = '"';
  for (const ch of s) {
    const c = ch.codePointAt(0)!;
    if (c >= 0x80 || c < 0x20) {
      for (const b of Buffer.from(ch, 'utf8')) out += `\\x${b.toString(16).padStart(2, '0')}`;
    } else {
      if (ch === '"' || ch === '\\') out += '\\';
      out += ch;
    }
  }
  return out + '"';
}

export class DurationError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'DurationError';
  }
}

function isDigit(c: string | undefined): boolean {
  return c !== undefined && c >= '0' && c <= '9';
}

/**
 * Parses a Go duration (`1h30m`, `1.5s`, `-2ms`, `0`) into nanoseconds. Throws DurationError with
 * Go's message (`time: invalid duration "x"`, `time: missing unit ...`, `time: unknown unit ...`).
 */
export function parseGoDuration(input: string): bigint {
  const invalid = () => new DurationError(`time: invalid duration ${goTimeQuote(input)}`);
  let s = input;
  let neg = false;
  if (s !== '' && (s[0] === '-' || s[0] === '+')) {
    neg = s[0] === '-';
    s = s.slice(1);
  }
  if (s === '0') return 0n;
  if (s === '') throw invalid();
  let d = 0n;
  while (s !== '') {
    if (!(s[0] === '.' || isDigit(s[0]))) throw invalid();
    // integer part; overflow beyond 2^63 is an error
    let i = 0;
    let v = 0n;
    while (i < s.length && isDigit(s[i])) {
      if (v > MAX / 10n) throw invalid();
      v = v * 10n + BigInt(s.charCodeAt(i) - 48);
      if (v > MAX) throw invalid();
      i++;
    }
    const pre = i > 0;
    s = s.slice(i);
    // fraction part; digits past the precision limit are dropped, not an error
    let f = 0n;
    let scale = 1;
    let post = false;
    if (s !== '' && s[0] === '.') {
      s = s.slice(1);
      let j = 0;
      let overflow = false;
      while (j < s.length && isDigit(s[j])) {
        if (!overflow) {
          if (f > (MAX - 1n) / 10n) overflow = true;
          else {
            const y = f * 10n + BigInt(s.charCodeAt(j) - 48);
            if (y > MAX) overflow = true;
            else {
              f = y;
              scale *= 10;
            }
          }
        }
        j++;
      }
      post = j > 0;
      s = s.slice(j);
    }
    if (!pre && !post) throw invalid();
    // unit: everything up to the next digit or '.'
    let k = 0;
    while (k < s.length && !(s[k] === '.' || isDigit(s[k]))) k++;
    if (k === 0) throw new DurationError(`time: missing unit in duration ${goTimeQuote(input)}`);
    const u = s.slice(0, k);
    s = s.slice(k);
    const unit = UNITS[u];
    if (unit === undefined) {
      throw new DurationError(`time: unknown unit ${goTimeQuote(u)} in duration ${goTimeQuote(input)}`);
    }
    if (v > MAX / unit) throw invalid();
    v *= unit;
    if (f > 0n) {
      // Go computes the fractional part in float64, truncating toward zero.
      v += BigInt(Math.trunc(Number(f) * (Number(unit) / scale)));
      if (v > MAX) throw invalid();
    }
    d += v;
    if (d > MAX) throw invalid();
  }
  if (neg) return -d;
  if (d > MAX - 1n) throw invalid();
  return d;
}

/** `v / 10^prec` fraction digits without trailing zeros (with the dot), and the integer part. */
function fmtFrac(v: bigint, prec: number): [string, bigint] {
  let digits = '';
  let printed = false;
  for (let i = 0; i < prec; i++) {
    const digit = v % 10n;
    printed = printed || digit !== 0n;
    if (printed) digits = digit.toString() + digits;
    v /= 10n;
  }
  return [printed ? '.' + digits : '', v];
}

/** Go's `Duration.String()`: `1h2m3.5s`, `100ms`, `1.5µs`, `0s`. */
export function formatGoDuration(ns: bigint | number): string {
  let u = typeof ns === 'bigint' ? ns : BigInt(Math.trunc(ns));
  const neg = u < 0n;
  if (neg) u = -u;
  let out: string;
  if (u < 1_000_000_000n) {
    if (u === 0n) return '0s';
    let prec: number;
    let unit: string;
    if (u < 1_000n) {
      prec = 0;
      unit = 'ns';
    } else if (u < 1_000_000n) {
      prec = 3;
      unit = '\u00b5s';
    } else {
      prec = 6;
      unit = 'ms';
    }
    const [frac, int] = fmtFrac(u, prec);
    out = int.toString() + frac + unit;
  } else {
    const [frac, secs] = fmtFrac(u, 9);
    out = (secs % 60n).toString() + frac + 's';
    const mins = secs / 60n;
    if (mins > 0n) {
      out = (mins % 60n).toString() + 'm' + out;
      const hours = mins / 60n;
      if (hours > 0n) out = hours.toString() + 'h' + out;
    }
  }
  return neg ? '-' + out : out;
}
