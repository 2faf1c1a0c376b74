/**
 * .dockerignore pattern matching with the semantics of moby/patternmatcher, the package BuildKit
 * (through tonistiigi/fsutil) uses to decide which context files it sends.
 *
 * minimatch is deliberately not used for matching. Its glob dialect differs from this one in ways
 * that change which files end up in an image:
 * - `**` here is not a path segment: `**file`, `a**` and `dir/**` are valid and mean "any
 *   characters, slashes included" before/after, and a leading `**` makes the rest a plain suffix;
 * - `[...]` and `\` escapes are handed to Go's regexp parser, so `[!x]` is not a negation, POSIX
 *   classes like `[[:digit:]]` exist, `\d` is a digit class, and malformed classes are errors
 *   (Go's `filepath.ErrBadPattern`) where minimatch silently treats them as literal text;
 * - there is no brace expansion, no extglob, no special treatment of dot-files, and `!` only means
 *   an exception at the start of a pattern;
 * - minimatch's regular expressions backtrack, which is exponential for some patterns.
 * So each pattern is classified and translated exactly as BuildKit does it, and the regular
 * expressions run on a linear-time engine (./re2.ts).
 */
import { IgnorePatternError } from './errors.js';
import { goClean, goDir, goTrimSpace } from './gopath.js';
import { compileRe2, type Re2Program } from './re2.js';

/** How a pattern is evaluated (moby/patternmatcher's internal classification). */
export type MatchType = 'exact' | 'prefix' | 'suffix' | 'regexp';

/** Go's `filepath.ErrBadPattern` text. */
const BAD_PATTERN = 'syntax error in pattern';

/**
 * Characters that get a backslash in the translation. BuildKit means to escape `.+()|{}$`, but its
 * lookup table can only hold characters below 64, so `|`, `{` and `}` reach the regexp unescaped:
 * `a|b*` is an alternation there (its `^|...` form matches every path) and `a{2}` matches `aa`.
 * Reproduced as is, since that is what decides which files BuildKit sends.
 */
const REGEXP_ONLY_SPECIALS = new Set(['.', '+', '(', ')', '$']);

export interface TranslatedPattern {
  matchType: MatchType;
  /** The Go regular expression for `regexp` patterns. */
  regexp: string | undefined;
}

/**
 * Classifies a cleaned pattern and, for `regexp` ones, builds the Go regular expression BuildKit
 * matches with. `sep` is the path separator (`\` is only useful to reproduce Windows results).
 * This is a rune-by-rune rewrite: `**` (eating one following separator) becomes an optional group
 * "anything, then a separator", or `.*` at the end; `*` and `?` never cross a separator;
 * regexp-only characters are escaped; `\x` stays an escape; `[` and `]` pass through unchanged, so
 * classes follow regexp rules.
 */
export function translatePattern(cleaned: string, sep: '/' | '\\' = '/'): TranslatedPattern {
  const runes = Array.from(cleaned);
  // Go's text/scanner silently drops a byte order mark at the start of its input.
  let pos = runes[0] === '\uFEFF' ? 1 : 0;
  const escSep = sep === '\\' ? '\\\\' : sep;
  let re = '^';
  let type: MatchType = 'exact';
  for (let iteration = 0; pos < runes.length; iteration++) {
    const ch = runes[pos++]!;
    if (ch === '*') {
      if (runes[pos] === '*') {
        pos++;
        if (runes[pos] === sep) pos++;
        if (pos >= runes.length) {
          // Trailing `**` accepts everything below, as .gitignore does.
          if (type === 'exact') type = 'prefix';
          else {
            re += '.*';
            type = 'regexp';
          }
        } else {
          re += `(.*${escSep})?`;
          type = 'regexp';
        }
        if (iteration === 0) type = 'suffix';
      } else {
        re += `[^${escSep}]*`;
        type = 'regexp';
      }
    } else if (ch === '?') {
      re += `[^${escSep}]`;
      type = 'regexp';
    } else if (REGEXP_ONLY_SPECIALS.has(ch)) {
      re += '\\' + ch;
    } else if (ch === '\\') {
      if (sep === '\\') {
        // Backslash is the separator on Windows; there is no escaping there.
        re += escSep;
        continue;
      }
      if (pos < runes.length) {
        re += '\\' + runes[pos++]!;
        type = 'regexp';
      } else {
        re += '\\';
      }
    } else if (ch === '[' || ch === ']') {
      re += ch;
      type = 'regexp';
    } else {
      re += ch;
    }
  }
  return type === 'regexp' ? { matchType: type, regexp: re + '$' } : { matchType: type, regexp: undefined };
}

/**
 * Go's `filepath.Match` syntax check (non-Windows), which BuildKit runs on every pattern when the
 * matcher is built. Only malformed bracket expressions and a trailing backslash are errors: a class
 * needs at least one member, `-` and `]` must be escaped where a member or range end is expected,
 * and every class must be closed.
 */
export function isValidGlob(pattern: string): boolean {
  const cs = Array.from(pattern);
  const n = cs.length;
  let i = 0;
  // A class member or range end: a character other than `-`/`]`, or an escaped character, which
  // must not end the pattern (the class would be unterminated).
  const member = (): boolean => {
    if (i >= n || cs[i] === '-' || cs[i] === ']') return false;
    if (cs[i] === '\\') {
      i++;
      if (i >= n) return false;
    }
    i++;
    return i < n;
  };
  while (i < n) {
    const c = cs[i]!;
    if (c === '\\') {
      if (i + 1 >= n) return false;
      i += 2;
    } else if (c === '[') {
      i++;
      if (cs[i] === '^') i++;
      for (let members = 0; ; members++) {
        if (i < n && cs[i] === ']' && members > 0) {
          i++;
          break;
        }
        if (!member()) return false;
        if (cs[i] === '-') {
          i++;
          if (!member()) return false;
        }
      }
    } else {
      i++;
    }
  }
  return true;
}

/** One compiled pattern. */
export class Pattern {
  /** The cleaned pattern, without the leading `!` of an exception. */
  readonly pattern: string;
  /** True for `!` exceptions (re-include what earlier patterns excluded). */
  readonly exclusion: boolean;
  readonly matchType: MatchType;
  /** The Go regular expression for `regexp` patterns (same text BuildKit compiles). */
  readonly regexp: string | undefined;
  /** Number of path elements in the pattern (used by the legacy single-parent check). */
  readonly depth: number;
  private readonly program: Re2Program | undefined;
  /** Why the regular expression does not compile; such a pattern fails whenever it is evaluated. */
  private readonly compileError: string | undefined;
  private readonly literal: string;
  /** A suffix pattern BuildKit can never match (see the constructor). */
  private readonly unmatchable: boolean = false;

  /** @internal built by {@link PatternMatcher}. */
  constructor(pattern: string, exclusion: boolean) {
    this.pattern = pattern;
    this.exclusion = exclusion;
    this.depth = pattern.split('/').length;
    const t = translatePattern(pattern);
    this.matchType = t.matchType;
    this.regexp = t.regexp;
    switch (t.matchType) {
      case 'prefix':
        this.literal = pattern.slice(0, -2);
        break;
      case 'suffix':
        // BuildKit slices two bytes off the pattern; after a leading BOM (three bytes in UTF-8)
        // that leaves a broken UTF-8 sequence, which no path can end with.
        this.unmatchable = pattern.startsWith('\uFEFF');
        this.literal = pattern.slice(2);
        break;
      default:
        this.literal = pattern;
    }
    if (t.regexp !== undefined) {
      const compiled = compileRe2(t.regexp);
      if (compiled.ok) this.program = compiled.program;
      else this.compileError = compiled.error;
    }
  }

  /** The pattern as written in the list (with `!` for exceptions). */
  toString(): string {
    return (this.exclusion ? '!' : '') + this.pattern;
  }

  /** Whether this pattern matches `path` itself (no parent logic). Throws for invalid regexps. */
  match(path: string): boolean {
    switch (this.matchType) {
      case 'exact':
        return path === this.literal;
      case 'prefix':
        return path.startsWith(this.literal);
      case 'suffix': {
        if (this.unmatchable) return false;
        const suffix = this.literal;
        if (path.endsWith(suffix)) return true;
        // `**/foo` also matches `foo` itself.
        return suffix.charCodeAt(0) === 0x2f && path.length === suffix.length - 1 && suffix.endsWith(path);
      }
      case 'regexp':
        if (!this.program) {
          throw new IgnorePatternError(this.toString(), `${BAD_PATTERN} (${this.compileError ?? 'invalid'})`);
        }
        return this.program.test(path);
    }
  }

}

/**
 * Per-pattern results for a directory, handed to its children by a tree walker so each child only
 * evaluates the patterns its parent did not already match. Obtain from
 * {@link PatternMatcher.matchesUsingParentResults}; {@link MatchInfo.none} means "no information".
 */
export class MatchInfo {
  static readonly none = new MatchInfo([]);
  private constructor(readonly parentMatched: readonly boolean[]) {}
  /** @internal */
  static of(parentMatched: boolean[]): MatchInfo {
    return new MatchInfo(parentMatched);
  }
}

export interface ParentMatchResult {
  matched: boolean;
  info: MatchInfo;
}

/**
 * An ordered pattern list. The last pattern that matches decides: a plain pattern excludes, an
 * exception (`!pattern`) re-includes. Paths are relative and `/`-separated.
 */
export class PatternMatcher {
  readonly patterns: readonly Pattern[];
  private readonly hasExclusions: boolean;

  /**
   * Builds the matcher like BuildKit: each entry is trimmed, dropped if empty, `path.Clean`ed
   * (before the `!` is taken off, as BuildKit does), and syntax-checked.
   * @throws IgnorePatternError for a lone `!` or a malformed pattern.
   */
  constructor(patterns: readonly string[]) {
    const compiled: Pattern[] = [];
    let exclusions = false;
    for (const raw of patterns) {
      let p = goTrimSpace(raw);
      if (p === '') continue;
      p = goClean(p);
      let exclusion = false;
      if (p.startsWith('!')) {
        if (p.length === 1) throw new IgnorePatternError(p, 'illegal exclusion pattern: "!"');
        exclusion = true;
        exclusions = true;
        p = p.slice(1);
      }
      if (!isValidGlob(p)) throw new IgnorePatternError((exclusion ? '!' : '') + p, BAD_PATTERN);
      compiled.push(new Pattern(p, exclusion));
    }
    this.patterns = compiled;
    this.hasExclusions = exclusions;
  }

  /** Whether any pattern is an exception (`!`). */
  exclusions(): boolean {
    return this.hasExclusions;
  }

  /**
   * Whether `file` is excluded, considering matches on the path itself and on every parent
   * directory (`docs` excludes `docs/a/b`). BuildKit's `MatchesOrParentMatches`.
   * @throws IgnorePatternError when an evaluated pattern's regular expression is invalid.
   */
  matchesOrParentMatches(file: string): boolean {
    let matched = false;
    const parent = goDir(file);
    for (const pattern of this.patterns) {
      // Only a pattern that could change the current answer is evaluated.
      if (pattern.exclusion !== matched) continue;
      let match = pattern.match(file);
      if (!match && parent !== '.') match = matchesSomeParent(pattern, parent);
      if (match) matched = !pattern.exclusion;
    }
    return matched;
  }

  /**
   * The incremental form used while walking a tree: `parent` is the `info` returned for the
   * directory containing `file` ({@link MatchInfo.none} at the top, or when unknown, in which case
   * parent directories are checked as in {@link matchesOrParentMatches}).
   * @throws IgnorePatternError when an evaluated pattern's regular expression is invalid.
   */
  matchesUsingParentResults(file: string, parent: MatchInfo = MatchInfo.none): ParentMatchResult {
    const parentMatched = parent.parentMatched;
    if (parentMatched.length !== 0 && parentMatched.length !== this.patterns.length) {
      throw new RangeError('MatchInfo belongs to a different pattern list');
    }
    const haveParent = parentMatched.length !== 0;
    const info = new Array<boolean>(this.patterns.length).fill(false);
    let matched = false;
    let dir: string | undefined;
    for (let i = 0; i < this.patterns.length; i++) {
      const pattern = this.patterns[i]!;
      let match = haveParent && parentMatched[i]!;
      if (!match) {
        // As above; a skipped pattern is recorded as not matched, so children evaluate it afresh.
        if (pattern.exclusion !== matched) continue;
        match = pattern.match(file);
        if (!match && !haveParent) {
          dir ??= goDir(file);
          if (dir !== '.') match = matchesSomeParent(pattern, dir);
        }
      }
      info[i] = match;
      if (match) matched = !pattern.exclusion;
    }
    return { matched, info: MatchInfo.of(info) };
  }

  /**
   * BuildKit's deprecated `Matches`: like {@link matchesOrParentMatches}, but of the ancestors only
   * the one with as many path elements as the pattern is tried. So `docs` still excludes
   * `docs/a/b`, but a two-element pattern that starts with `**` only tests `x/y` for `x/y/z/f` and
   * misses a match on `x/y/z`. Kept because BuildKit's package-level `Matches` helper still behaves
   * this way; tree walks use the two methods above.
   */
  matches(file: string): boolean {
    let matched = false;
    const parent = goDir(file);
    const parentDirs = parent.split('/');
    for (const pattern of this.patterns) {
      if (pattern.exclusion !== matched) continue;
      let match = pattern.match(file);
      if (!match && parent !== '.' && pattern.depth <= parentDirs.length) {
        match = pattern.match(parentDirs.slice(0, pattern.depth).join('/'));
      }
      if (match) matched = !pattern.exclusion;
    }
    return matched;
  }
}

/**
 * Whether the pattern matches any ancestor of a path whose parent directory is `dir`. (BuildKit
 * ignores errors here; they cannot occur, as the pattern was just evaluated on the path itself.)
 */
function matchesSomeParent(pattern: Pattern, dir: string): boolean {
  // The prefixes of `dir` ending before each separator, then `dir` itself (as Go's split/join).
  for (let from = 0; ; ) {
    const slash = dir.indexOf('/', from);
    if (slash < 0) return pattern.match(dir);
    if (pattern.match(dir.slice(0, slash))) return true;
    from = slash + 1;
  }
}

/**
 * BuildKit's package-level `Matches(file, patterns)`: builds a matcher, cleans `file` (`.` is never
 * excluded) and applies the single-parent rule of {@link PatternMatcher.matches}.
 */
export function matches(file: string, patterns: readonly string[]): boolean {
  const pm = new PatternMatcher(patterns);
  const cleaned = goClean(file);
  return cleaned === '.' ? false : pm.matches(cleaned);
}

/** BuildKit's package-level `MatchesOrParentMatches(file, patterns)`. */
export function matchesOrParentMatches(file: string, patterns: readonly string[]): boolean {
  const pm = new PatternMatcher(patterns);
  const cleaned = goClean(file);
  return cleaned === '.' ? false : pm.matchesOrParentMatches(cleaned);
}
