/**
 * A small, linear-time implementation of the part of Go's regexp (RE2) syntax that BuildKit's
 * pattern translation can produce.
 *
 * moby/patternmatcher turns every non-trivial .dockerignore pattern into a Go regular expression
 * and matches with it. The translation passes `[`, `]`, `^`, `-` and backslash escapes through to
 * the regexp parser, so a pattern's meaning is decided by RE2 syntax rules: `\d` is a digit class,
 * `\12` an octal escape, `[[:alpha:]]` a POSIX class, `[*]` a class that closes early, and some
 * patterns that Go's `filepath.Match` accepts (e.g. `[l-O]`) fail to compile. A JavaScript RegExp
 * reads the same source differently (`[]` is an empty class, `\s`/`.` cover other characters,
 * escapes follow other rules) and it backtracks, so a pattern such as `*a*a*a*a*b` could take
 * exponential time on a long file name. This module therefore parses the RE2 source itself and
 * runs it as an automaton whose states are built lazily and cached (the technique RE2 uses), which
 * keeps matching linear in the length of the path.
 *
 * Supported: literals, `.`, `^`, `$`, `\A`, `\z`, `\b`, `\B`, `\Q...\E`, escapes (punctuation,
 * octal, `\xHH`, `\x{H...}`, `\a\f\n\r\t\v`), `\d\D\s\S\w\W`, `\pX`/`\p{Name}`, classes with ranges,
 * negation, POSIX `[:name:]` and the escapes above, capture groups, alternation, and the `*`, `+`,
 * `?`, `{n}`, `{n,}`, `{n,m}` repetitions (greedy or lazy). Flag groups `(?...)` cannot appear in a
 * translated pattern (`(` is always escaped there) and are rejected as unsupported.
 */

/** Tests one code point. */
type CharTest = (cp: number) => boolean;

type Assertion = 'bot' | 'eot' | 'wordb' | 'nowordb';

type Node =
  /** `literal` is set when the node is a single literal code point. */
  | { readonly kind: 'char'; readonly test: CharTest; readonly literal?: number }
  | { readonly kind: 'assert'; readonly assertion: Assertion }
  /** Alternatives, each a sequence (a group, or the whole expression). */
  | { readonly kind: 'alt'; readonly alts: Node[][] }
  /** `max` -1: unbounded. */
  | { readonly kind: 'repeat'; readonly min: number; readonly max: number; readonly sub: Node };

type AltNode = Extract<Node, { kind: 'alt' }>;

/** Go's limit on counted repetition. */
const MAX_REPEAT = 1000;

/** Outcome of compiling a Go regexp source. */
export type Re2CompileResult = { ok: true; program: Re2Program } | { ok: false; error: string };

const isWordCp = (c: number): boolean =>
  (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) || c === 0x5f;

const isAlnumCp = (c: number): boolean =>
  (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a);

const hexValue = (c: number): number => {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x61 && c <= 0x66) return c - 0x61 + 10;
  if (c >= 0x41 && c <= 0x46) return c - 0x41 + 10;
  return -1;
};

const MAX_RUNE = 0x10ffff;

/** A set of code points, as inclusive ranges plus arbitrary predicates (Unicode tables). */
class ClassBuilder {
  private readonly ranges: number[] = [];
  private readonly preds: CharTest[] = [];

  addRange(lo: number, hi: number): void {
    this.ranges.push(lo, hi);
  }

  addRanges(ranges: readonly number[], negate: boolean): void {
    if (!negate) {
      this.ranges.push(...ranges);
      return;
    }
    const sorted: Array<[number, number]> = [];
    for (let i = 0; i < ranges.length; i += 2) sorted.push([ranges[i]!, ranges[i + 1]!]);
    sorted.sort((a, b) => a[0] - b[0]);
    let next = 0;
    for (const [lo, hi] of sorted) {
      if (lo > next) this.ranges.push(next, lo - 1);
      next = Math.max(next, hi + 1);
    }
    if (next <= MAX_RUNE) this.ranges.push(next, MAX_RUNE);
  }

  addPredicate(test: CharTest, negate: boolean): void {
    this.preds.push(negate ? (c) => !test(c) : test);
  }

  build(negate: boolean): CharTest {
    const ranges = this.ranges.slice();
    const preds = this.preds.slice();
    const inClass = (c: number): boolean => {
      for (let i = 0; i < ranges.length; i += 2) if (c >= ranges[i]! && c <= ranges[i + 1]!) return true;
      for (const p of preds) if (p(c)) return true;
      return false;
    };
    return negate ? (c) => !inClass(c) : inClass;
  }
}

/** RE2's Perl classes are ASCII-only (JS `\s` is much wider). */
const PERL_GROUPS: Record<string, readonly number[]> = {
  d: [0x30, 0x39],
  s: [0x09, 0x0a, 0x0c, 0x0d, 0x20, 0x20],
  w: [0x30, 0x39, 0x41, 0x5a, 0x5f, 0x5f, 0x61, 0x7a],
};

const POSIX_GROUPS: Record<string, readonly number[]> = {
  alnum: [0x30, 0x39, 0x41, 0x5a, 0x61, 0x7a],
  alpha: [0x41, 0x5a, 0x61, 0x7a],
  ascii: [0x00, 0x7f],
  blank: [0x09, 0x09, 0x20, 0x20],
  cntrl: [0x00, 0x1f, 0x7f, 0x7f],
  digit: [0x30, 0x39],
  graph: [0x21, 0x7e],
  lower: [0x61, 0x7a],
  print: [0x20, 0x7e],
  punct: [0x21, 0x2f, 0x3a, 0x40, 0x5b, 0x60, 0x7b, 0x7e],
  space: [0x09, 0x0d, 0x20, 0x20],
  upper: [0x41, 0x5a],
  word: [0x30, 0x39, 0x41, 0x5a, 0x5f, 0x5f, 0x61, 0x7a],
  xdigit: [0x30, 0x39, 0x41, 0x46, 0x61, 0x66],
};

/**
 * Go's Unicode tables for `\p{Name}`: `Any`, general categories and scripts. JS property escapes
 * cover the same names; Go's `C` excludes unassigned code points, JS's `\p{C}` does not, so it is
 * spelled out.
 */
function unicodeTable(name: string): CharTest | undefined {
  if (name === 'Any') return () => true;
  let source: string;
  if (name === 'C') source = '[\\p{Cc}\\p{Cf}\\p{Co}\\p{Cs}]';
  else if (/^[A-Z][a-z]?$/.test(name)) source = `\\p{General_Category=${name}}`;
  else if (/^[A-Z][A-Za-z_]*$/.test(name)) source = `\\p{Script=${name}}`;
  else return undefined;
  let re: RegExp;
  try {
    re = new RegExp(`^${source}$`, 'u');
  } catch {
    return undefined;
  }
  return (c) => re.test(String.fromCodePoint(c));
}

class Re2Parser {
  private pos = 0;
  constructor(private readonly cps: readonly number[]) {}

  private at(i: number): number {
    return i < this.cps.length ? this.cps[i]! : -1;
  }

  /** Parses the whole expression into one alternation node. */
  parse(): AltNode {
    const cps = this.cps;
    // One frame per open group (plus the top level): finished alternatives and the current one.
    const stack: Node[][][] = [[[]]];
    let lastRepeat = false;
    while (this.pos < cps.length) {
      const c = cps[this.pos]!;
      const frame = stack[stack.length - 1]!;
      const items = frame[frame.length - 1]!;
      let repeat = false;
      switch (c) {
        case 0x28: // (
          if (this.at(this.pos + 1) === 0x3f) throw new SyntaxFailure('unsupported group syntax (?');
          stack.push([[]]);
          this.pos++;
          break;
        case 0x29: {
          // )
          if (stack.length === 1) throw new SyntaxFailure('unexpected )');
          const alts = stack.pop()!;
          const outer = stack[stack.length - 1]!;
          outer[outer.length - 1]!.push({ kind: 'alt', alts });
          this.pos++;
          break;
        }
        case 0x7c: // |
          frame.push([]);
          this.pos++;
          break;
        case 0x5e: // ^ (one-line mode: beginning of text)
          items.push({ kind: 'assert', assertion: 'bot' });
          this.pos++;
          break;
        case 0x24: // $ (one-line mode: end of text)
          items.push({ kind: 'assert', assertion: 'eot' });
          this.pos++;
          break;
        case 0x2e: // .
          items.push({ kind: 'char', test: (x) => x !== 0x0a });
          this.pos++;
          break;
        case 0x5b: // [
          items.push({ kind: 'char', test: this.parseClass() });
          break;
        case 0x2a:
        case 0x2b:
        case 0x3f: {
          // * + ?
          const min = c === 0x2b ? 1 : 0;
          const max = c === 0x3f ? 1 : -1;
          this.pos++;
          this.repeat(items, min, max, lastRepeat);
          repeat = true;
          break;
        }
        case 0x7b: {
          // { is a counted repetition when it parses as one, else a literal
          const counted = this.parseCount();
          if (!counted) {
            items.push(literal(c));
            this.pos++;
            break;
          }
          const [min, max, end] = counted;
          if (min < 0 || min > MAX_REPEAT || max > MAX_REPEAT || (max >= 0 && min > max)) {
            throw new SyntaxFailure('invalid repeat count');
          }
          this.pos = end;
          this.repeat(items, min, max, lastRepeat);
          repeat = true;
          break;
        }
        case 0x5c: // backslash
          this.parseBackslash(items);
          break;
        default:
          items.push(literal(c));
          this.pos++;
      }
      lastRepeat = repeat;
    }
    if (stack.length !== 1) throw new SyntaxFailure('missing closing )');
    return { kind: 'alt', alts: stack[0]! };
  }

  /** Applies a repetition to the last item; `pos` is just past the operator. */
  private repeat(items: Node[], min: number, max: number, lastRepeat: boolean): void {
    if (this.at(this.pos) === 0x3f) this.pos++; // lazy form: same set of matches
    // Perl (and RE2) reject stacked operators such as `a**`.
    if (lastRepeat) throw new SyntaxFailure('invalid nested repetition operator');
    if (items.length === 0) throw new SyntaxFailure('missing argument to repetition operator');
    items.push({ kind: 'repeat', min, max, sub: items.pop()! });
  }

  /** `{n}`, `{n,}`, `{n,m}` at `pos`: [min, max (-1 unbounded), end]; undefined when not a count. */
  private parseCount(): [number, number, number] | undefined {
    let i = this.pos + 1;
    const int = (): number | undefined => {
      const start = i;
      while (this.at(i) >= 0x30 && this.at(i) <= 0x39) i++;
      if (i === start) return undefined;
      // Leading zeros are not allowed; over-large numbers become -1 (an error later).
      if (i - start >= 2 && this.cps[start] === 0x30) return undefined;
      let n = 0;
      for (let k = start; k < i; k++) {
        if (n >= 1e8) return -1;
        n = n * 10 + (this.cps[k]! - 0x30);
      }
      return n;
    };
    let min = int();
    if (min === undefined || i >= this.cps.length) return undefined;
    let max = min;
    if (this.cps[i] === 0x2c) {
      i++;
      if (i >= this.cps.length) return undefined;
      if (this.cps[i] === 0x7d) max = -1;
      else {
        const m = int();
        if (m === undefined) return undefined;
        max = m;
        if (m < 0) min = -1;
      }
    }
    if (this.at(i) !== 0x7d) return undefined;
    return [min, max, i + 1];
  }

  private parseBackslash(items: Node[]): void {
    const next = this.at(this.pos + 1);
    switch (next) {
      case 0x41: // \A
        items.push({ kind: 'assert', assertion: 'bot' });
        this.pos += 2;
        return;
      case 0x62: // \b
        items.push({ kind: 'assert', assertion: 'wordb' });
        this.pos += 2;
        return;
      case 0x42: // \B
        items.push({ kind: 'assert', assertion: 'nowordb' });
        this.pos += 2;
        return;
      case 0x43: // \C
        throw new SyntaxFailure('invalid escape sequence \\C');
      case 0x51: {
        // \Q ... \E: everything up to \E (or the end) is literal, backslashes included
        let i = this.pos + 2;
        while (i < this.cps.length && !(this.cps[i] === 0x5c && this.at(i + 1) === 0x45)) {
          items.push(literal(this.cps[i]!));
          i++;
        }
        this.pos = i < this.cps.length ? i + 2 : i;
        return;
      }
      case 0x7a: // \z
        items.push({ kind: 'assert', assertion: 'eot' });
        this.pos += 2;
        return;
    }
    const cls = new ClassBuilder();
    if (this.tryUnicodeClass(cls) || this.tryPerlClass(cls)) {
      items.push({ kind: 'char', test: cls.build(false) });
      return;
    }
    items.push(literal(this.parseEscape()));
  }

  /** `\pX`, `\p{Name}`, `\PX`, `\p{^Name}`; false when not at such an escape. */
  private tryUnicodeClass(cls: ClassBuilder): boolean {
    const p = this.pos;
    if (this.at(p) !== 0x5c || (this.at(p + 1) !== 0x70 && this.at(p + 1) !== 0x50)) return false;
    let negate = this.at(p + 1) === 0x50;
    let name: string;
    let end: number;
    if (this.at(p + 2) !== 0x7b) {
      name = p + 2 < this.cps.length ? String.fromCodePoint(this.cps[p + 2]!) : '';
      end = Math.min(p + 3, this.cps.length);
    } else {
      const close = this.cps.indexOf(0x7d, p);
      if (close < 0) throw new SyntaxFailure('invalid character class range');
      name = String.fromCodePoint(...this.cps.slice(p + 3, close));
      end = close + 1;
    }
    if (name.startsWith('^')) {
      negate = !negate;
      name = name.slice(1);
    }
    const table = unicodeTable(name);
    if (!table) throw new SyntaxFailure(`invalid character class range \\p{${name}}`);
    cls.addPredicate(table, negate);
    this.pos = end;
    return true;
  }

  /** `\d \D \s \S \w \W`; false when not at such an escape. */
  private tryPerlClass(cls: ClassBuilder): boolean {
    if (this.at(this.pos) !== 0x5c) return false;
    const n = this.at(this.pos + 1);
    const letter = n >= 0 ? String.fromCodePoint(n) : '';
    const group = PERL_GROUPS[letter.toLowerCase()];
    if (!group || !'dDsSwW'.includes(letter)) return false;
    cls.addRanges(group, letter !== letter.toLowerCase());
    this.pos += 2;
    return true;
  }

  /** A single-character escape at `pos` (which holds the backslash); returns the code point. */
  private parseEscape(): number {
    const start = this.pos;
    if (start + 1 >= this.cps.length) throw new SyntaxFailure('trailing backslash at end of expression');
    const c = this.cps[start + 1]!;
    this.pos = start + 2;
    if (c < 0x80 && !isAlnumCp(c)) return c;
    const isOctal = (x: number) => x >= 0x30 && x <= 0x37;
    if ((c >= 0x31 && c <= 0x37 && isOctal(this.at(this.pos))) || c === 0x30) {
      // Octal: up to three digits in all. A lone \1..\7 would be a backreference (unsupported).
      let r = c - 0x30;
      for (let k = 1; k < 3 && isOctal(this.at(this.pos)); k++) r = r * 8 + (this.cps[this.pos++]! - 0x30);
      return r;
    }
    switch (c) {
      case 0x78: {
        // \x
        if (this.pos >= this.cps.length) break;
        const first = this.cps[this.pos++]!;
        if (first === 0x7b) {
          let r = 0;
          let digits = 0;
          for (;;) {
            if (this.pos >= this.cps.length) throw this.badEscape(start);
            const d = this.cps[this.pos++]!;
            if (d === 0x7d) break;
            const v = hexValue(d);
            if (v < 0) throw this.badEscape(start);
            r = r * 16 + v;
            if (r > MAX_RUNE) throw this.badEscape(start);
            digits++;
          }
          if (digits === 0) throw this.badEscape(start);
          return r;
        }
        const second = this.pos < this.cps.length ? this.cps[this.pos++]! : -1;
        const x = hexValue(first);
        const y = hexValue(second);
        if (x < 0 || y < 0) break;
        return x * 16 + y;
      }
      case 0x61:
        return 0x07;
      case 0x66:
        return 0x0c;
      case 0x6e:
        return 0x0a;
      case 0x72:
        return 0x0d;
      case 0x74:
        return 0x09;
      case 0x76:
        return 0x0b;
    }
    throw this.badEscape(start);
  }

  private badEscape(start: number): SyntaxFailure {
    return new SyntaxFailure(`invalid escape sequence ${String.fromCodePoint(...this.cps.slice(start, this.pos))}`);
  }

  /** A bracket expression at `pos`; returns its membership test. */
  private parseClass(): CharTest {
    const cps = this.cps;
    this.pos++; // [
    let negate = false;
    if (this.at(this.pos) === 0x5e) {
      negate = true;
      this.pos++;
    }
    const cls = new ClassBuilder();
    let first = true; // `]` is a literal as the first member
    while (this.pos >= cps.length || cps[this.pos] !== 0x5d || first) {
      first = false;
      if (this.at(this.pos) === 0x5b && this.at(this.pos + 1) === 0x3a && this.pos + 2 < cps.length) {
        if (this.tryNamedClass(cls)) continue;
      }
      if (this.tryUnicodeClass(cls) || this.tryPerlClass(cls)) continue;
      const lo = this.parseClassChar();
      let hi = lo;
      if (this.pos + 1 < cps.length && cps[this.pos] === 0x2d && cps[this.pos + 1] !== 0x5d) {
        this.pos++;
        hi = this.parseClassChar();
        if (hi < lo) throw new SyntaxFailure('invalid character class range');
      }
      cls.addRange(lo, hi);
    }
    this.pos++; // ]
    return cls.build(negate);
  }

  /** `[:name:]` / `[:^name:]`; the `:]` is searched in the whole rest of the expression, as RE2 does. */
  private tryNamedClass(cls: ClassBuilder): boolean {
    const cps = this.cps;
    let close = -1;
    for (let i = this.pos + 2; i + 1 < cps.length; i++) {
      if (cps[i] === 0x3a && cps[i + 1] === 0x5d) {
        close = i;
        break;
      }
    }
    if (close < 0) return false;
    let name = String.fromCodePoint(...cps.slice(this.pos + 2, close));
    let negate = false;
    if (name.startsWith('^')) {
      negate = true;
      name = name.slice(1);
    }
    const group = Object.prototype.hasOwnProperty.call(POSIX_GROUPS, name) ? POSIX_GROUPS[name] : undefined;
    if (!group) throw new SyntaxFailure('invalid character class range');
    cls.addRanges(group, negate);
    this.pos = close + 2;
    return true;
  }

  private parseClassChar(): number {
    if (this.pos >= this.cps.length) throw new SyntaxFailure('missing closing ]');
    if (this.cps[this.pos] === 0x5c) return this.parseEscape();
    return this.cps[this.pos++]!;
  }
}

class SyntaxFailure {
  constructor(readonly message: string) {}
}

function literal(c: number): Node {
  return { kind: 'char', test: (x) => x === c, literal: c };
}

/**
 * Literal text every match must start with (after a leading `^`) and end with (before a final
 * `$`), when the expression is a single alternative. Used as a cheap pre-check: most translated
 * patterns end in literal text (`*.log` ends in `\.log$`), and most paths fail on their last
 * characters.
 */
function literalAffixes(root: AltNode): { prefix: string; suffix: string } {
  if (root.alts.length !== 1) return { prefix: '', suffix: '' };
  const seq = root.alts[0]!;
  const lit = (n: Node | undefined) => (n?.kind === 'char' ? n.literal : undefined);
  let prefix = '';
  if (seq[0]?.kind === 'assert' && seq[0].assertion === 'bot') {
    for (let i = 1; i < seq.length && lit(seq[i]) !== undefined; i++) prefix += String.fromCodePoint(lit(seq[i])!);
  }
  let suffix = '';
  const last = seq[seq.length - 1];
  if (last?.kind === 'assert' && last.assertion === 'eot') {
    for (let i = seq.length - 2; i >= 0 && lit(seq[i]) !== undefined; i--) suffix = String.fromCodePoint(lit(seq[i])!) + suffix;
  }
  return { prefix, suffix };
}

// ---------------------------------------------------------------------------------------------
// Automaton

const K_CHAR = 0;
const K_SPLIT = 1;
const K_ASSERT = 2;
const K_MATCH = 3;

interface NfaState {
  kind: number;
  out: number;
  out2: number;
  test: CharTest | undefined;
  assertion: Assertion | undefined;
}

/** Context of a position in the subject, for evaluating assertions. */
interface PositionContext {
  atStart: boolean;
  atEnd: boolean;
  prevWord: boolean;
  nextWord: boolean;
}

/** A cached automaton state: the set of NFA states reached before taking the epsilon closure. */
interface DfaState {
  readonly kernel: readonly number[];
  readonly atStart: boolean;
  readonly prevWord: boolean;
  /** Successor per ASCII code point; MATCHED / DEAD are sentinels. */
  readonly ascii: Array<DfaState | typeof MATCHED | undefined>;
  readonly other: Map<number, DfaState | typeof MATCHED>;
  endResult: boolean | undefined;
}

const MATCHED = Symbol('matched');
/** Cached states per program before the cache is dropped and rebuilt (bounds memory). */
const MAX_CACHED_STATES = 2000;

export class Re2Program {
  private readonly states: NfaState[] = [];
  private readonly start: number;
  private readonly anchored: boolean;
  private readonly usesWordBoundary: boolean;
  private cache = new Map<string, DfaState>();
  private initial: DfaState | undefined;
  private readonly dead: DfaState;
  private readonly requiredPrefix: string;
  private readonly requiredSuffix: string;

  /** @internal use {@link compileRe2}. */
  constructor(root: AltNode) {
    const affixes = literalAffixes(root);
    this.requiredPrefix = affixes.prefix;
    this.requiredSuffix = affixes.suffix;
    const match = this.add({ kind: K_MATCH, out: -1, out2: -1, test: undefined, assertion: undefined });
    this.start = this.compileNode(root, match);
    // A leading ^ (always emitted by the pattern translation) makes search equal to anchored match,
    // unless a top-level alternative lacks it.
    this.anchored = root.alts.every((seq) => seq[0]?.kind === 'assert' && seq[0].assertion === 'bot');
    this.usesWordBoundary = this.states.some((s) => s.assertion === 'wordb' || s.assertion === 'nowordb');
    this.dead = { kernel: [], atStart: false, prevWord: false, ascii: [], other: new Map(), endResult: false };
  }

  private add(s: NfaState): number {
    this.states.push(s);
    return this.states.length - 1;
  }

  private compileSeq(nodes: readonly Node[], next: number): number {
    let out = next;
    for (let i = nodes.length - 1; i >= 0; i--) out = this.compileNode(nodes[i]!, out);
    return out;
  }

  private compileNode(node: Node, next: number): number {
    switch (node.kind) {
      case 'char':
        return this.add({ kind: K_CHAR, out: next, out2: -1, test: node.test, assertion: undefined });
      case 'assert':
        return this.add({ kind: K_ASSERT, out: next, out2: -1, test: undefined, assertion: node.assertion });
      case 'alt': {
        let entry = this.compileSeq(node.alts[node.alts.length - 1]!, next);
        for (let i = node.alts.length - 2; i >= 0; i--) {
          const alt = this.compileSeq(node.alts[i]!, next);
          entry = this.add({ kind: K_SPLIT, out: alt, out2: entry, test: undefined, assertion: undefined });
        }
        return entry;
      }
      case 'repeat': {
        // x{min,max}: min copies, then either a loop (unbounded) or max-min nested optional copies.
        let tail: number;
        if (node.max < 0) {
          const loop = this.add({ kind: K_SPLIT, out: -1, out2: next, test: undefined, assertion: undefined });
          this.states[loop]!.out = this.compileNode(node.sub, loop);
          tail = loop;
        } else {
          tail = next;
          for (let i = node.min; i < node.max; i++) {
            const body = this.compileNode(node.sub, tail);
            tail = this.add({ kind: K_SPLIT, out: body, out2: next, test: undefined, assertion: undefined });
          }
        }
        for (let i = 0; i < node.min; i++) tail = this.compileNode(node.sub, tail);
        return tail;
      }
    }
  }

  /** Whether the expression matches anywhere in `subject` (Go `Regexp.MatchString`). */
  test(subject: string): boolean {
    if (!subject.endsWith(this.requiredSuffix) || !subject.startsWith(this.requiredPrefix)) return false;
    let state = this.initialState();
    const n = subject.length;
    for (let i = 0; i < n; i++) {
      let c = subject.charCodeAt(i);
      if (c >= 0xd800 && c <= 0xdbff && i + 1 < n) {
        const lo = subject.charCodeAt(i + 1);
        if (lo >= 0xdc00 && lo <= 0xdfff) {
          c = 0x10000 + ((c - 0xd800) << 10) + (lo - 0xdc00);
          i++;
        }
      }
      let next = c < 128 ? state.ascii[c] : state.other.get(c);
      if (next === undefined) next = this.step(state, c);
      if (next === MATCHED) return true;
      if (next === this.dead) return false;
      state = next;
    }
    if (state.endResult === undefined) {
      state.endResult = this.closureMatches(state, { atStart: state.atStart, atEnd: true, prevWord: state.prevWord, nextWord: false });
    }
    return state.endResult;
  }

  private initialState(): DfaState {
    if (!this.initial) this.initial = this.intern([this.start], true, false);
    return this.initial;
  }

  private intern(kernel: number[], atStart: boolean, prevWord: boolean): DfaState {
    if (kernel.length === 0 && this.anchored) return this.dead;
    const key = `${atStart ? 1 : 0}${prevWord ? 1 : 0}:${kernel.join(',')}`;
    let s = this.cache.get(key);
    if (!s) {
      if (this.cache.size >= MAX_CACHED_STATES) {
        this.cache = new Map();
        this.initial = undefined;
      }
      s = { kernel, atStart, prevWord, ascii: new Array(128).fill(undefined), other: new Map(), endResult: undefined };
      this.cache.set(key, s);
    }
    return s;
  }

  /** Epsilon closure of a state's kernel (plus the start state when searching unanchored). */
  private closure(state: DfaState, ctx: PositionContext): { set: number[]; matched: boolean } {
    const seen = new Set<number>();
    const set: number[] = [];
    let matched = false;
    const stack: number[] = [];
    const roots = this.anchored || state.atStart ? state.kernel : [...state.kernel, this.start];
    for (let i = roots.length - 1; i >= 0; i--) stack.push(roots[i]!);
    while (stack.length) {
      const id = stack.pop()!;
      if (seen.has(id)) continue;
      seen.add(id);
      const s = this.states[id]!;
      switch (s.kind) {
        case K_MATCH:
          matched = true;
          break;
        case K_CHAR:
          set.push(id);
          break;
        case K_SPLIT:
          stack.push(s.out2, s.out);
          break;
        case K_ASSERT:
          if (assertionHolds(s.assertion!, ctx)) stack.push(s.out);
          break;
      }
    }
    return { set, matched };
  }

  private closureMatches(state: DfaState, ctx: PositionContext): boolean {
    return this.closure(state, ctx).matched;
  }

  private step(state: DfaState, c: number): DfaState | typeof MATCHED {
    const word = this.usesWordBoundary && isWordCp(c);
    const { set, matched } = this.closure(state, {
      atStart: state.atStart,
      atEnd: false,
      prevWord: state.prevWord,
      nextWord: word,
    });
    let result: DfaState | typeof MATCHED;
    if (matched) {
      result = MATCHED;
    } else {
      const next = new Set<number>();
      for (const id of set) {
        const s = this.states[id]!;
        if (s.test!(c)) next.add(s.out);
      }
      result = this.intern([...next].sort((a, b) => a - b), false, word);
    }
    if (c < 128) state.ascii[c] = result;
    else state.other.set(c, result);
    return result;
  }
}

function assertionHolds(a: Assertion, ctx: PositionContext): boolean {
  switch (a) {
    case 'bot':
      return ctx.atStart;
    case 'eot':
      return ctx.atEnd;
    case 'wordb':
      return ctx.prevWord !== ctx.nextWord;
    case 'nowordb':
      return ctx.prevWord === ctx.nextWord;
  }
}

/**
 * Compiles a Go regexp source (Perl flags, as `regexp.Compile` uses). Fails exactly where Go's
 * parser does for the supported subset; unsupported constructs also fail.
 */
export function compileRe2(source: string): Re2CompileResult {
  const cps = Array.from(source, (ch) => ch.codePointAt(0)!);
  try {
    return { ok: true, program: new Re2Program(new Re2Parser(cps).parse()) };
  } catch (err) {
    if (err instanceof SyntaxFailure) return { ok: false, error: err.message };
    throw err;
  }
}
