/**
 * Walking a build context the way BuildKit's client sends it (tonistiigi/fsutil `Walk` with a
 * `FilterOpt`): pre-order, entries of a directory in byte order of their names, symlinks reported
 * as such and never followed, and include/exclude patterns applied with moby/patternmatcher
 * semantics.
 *
 * The subtle part is excluded directories. A directory that an exclude pattern matches is skipped
 * outright only when no exception (`!pattern`) could re-include something below it. Otherwise it
 * is still read, and reported only if something inside turns out to be included; it is then
 * reported just before that first included entry. The same holds for include patterns and
 * directories they do not match.
 */
import { Buffer, isUtf8 } from 'node:buffer';
import { lstatSync, readdirSync, realpathSync, statSync, type Dirent, type Stats } from 'node:fs';
import { InputFileError } from '../../errors.js';
import { compareNames } from './gopath.js';
import { MatchInfo, PatternMatcher, type Pattern } from './patterns.js';

/** Reply to a yielded entry: do not descend into this directory (for a file: skip its remaining siblings). */
export const SKIP_DIR = 'skip-dir';
export type WalkReply = typeof SKIP_DIR | undefined | void;

export interface WalkEntry {
  /** Relative to the context root, `/`-separated, no leading `./` or `/`. */
  readonly path: string;
  /** `lstat` result: symlinks are reported as symlinks. */
  readonly stats: Stats;
}

/** Patterns for one filter, in BuildKit's `FilterOpt` terms. */
export interface FilterOptions {
  /** Only paths matching one of these (or below a match) are walked; empty or absent: everything. */
  includePatterns?: readonly string[];
  /** .dockerignore patterns: matches are left out, `!` exceptions bring paths back. */
  excludePatterns?: readonly string[];
}

/** One entry flowing between the stages of a walk. */
interface Node {
  readonly path: string;
  readonly isDir: boolean;
  /** `lstat` of the entry, loaded on first use; throws like `lstatSync`. */
  stats(): Stats;
  /** Set on the second visit of a directory whose listing failed. */
  readonly error?: NodeJS.ErrnoException;
}

type Stream = Generator<Node, void, WalkReply>;

/** Characters that make a pattern more than a literal path prefix (`\` escapes on Linux). */
const PATTERN_CHARS = /[*[\]?^\\]/;

/** The pattern minus a trailing `/**` or `/*` (one of them), as fsutil compares prefixes. */
function withoutTrailingGlob(p: Pattern): string {
  let s = p.pattern;
  if (s.endsWith('/**')) s = s.slice(0, -3);
  if (s.endsWith('/*')) s = s.slice(0, -2);
  return s;
}

/**
 * A compiled include/exclude filter. Construction validates the patterns.
 * @throws IgnorePatternError from the constructor for an invalid pattern.
 */
export class WalkFilter {
  readonly include: PatternMatcher | undefined;
  readonly exclude: PatternMatcher | undefined;
  /** No include pattern uses wildcards, so unmatched directories off every pattern's path can be pruned. */
  private readonly onlyPrefixIncludes: boolean;
  /** No exception uses wildcards, so excluded directories off every exception's path can be pruned. */
  private readonly onlyPrefixExcludeExceptions: boolean;

  constructor(options: FilterOptions = {}) {
    const inc = options.includePatterns ?? [];
    const exc = options.excludePatterns ?? [];
    this.include = inc.length > 0 ? new PatternMatcher(inc) : undefined;
    this.exclude = exc.length > 0 ? new PatternMatcher(exc) : undefined;
    this.onlyPrefixIncludes = !(this.include?.patterns ?? []).some(
      (p) => !p.exclusion && PATTERN_CHARS.test(withoutTrailingGlob(p)),
    );
    this.onlyPrefixExcludeExceptions = !(this.exclude?.patterns ?? []).some(
      (p) => p.exclusion && PATTERN_CHARS.test(withoutTrailingGlob(p)),
    );
  }

  /**
   * Whether `path` (relative, `/`-separated) passes the filter on its own, i.e. BuildKit would let
   * it be opened: it or an ancestor matches the include patterns, and neither it nor an ancestor
   * is excluded.
   */
  allows(path: string): boolean {
    if (this.include && !this.include.matchesOrParentMatches(path)) return false;
    if (this.exclude && this.exclude.matchesOrParentMatches(path)) return false;
    return true;
  }

  /** Whether some (non-exception) include pattern names a path below directory `dir`. */
  private includeMayMatchBelow(dir: string): boolean {
    return this.include!.patterns.some((p) => !p.exclusion && (withoutTrailingGlob(p) + '/').startsWith(dir + '/'));
  }

  /** Whether some exception names a path below directory `dir`. */
  private exceptionMayMatchBelow(dir: string): boolean {
    return this.exclude!.patterns.some((p) => p.exclusion && (withoutTrailingGlob(p) + '/').startsWith(dir + '/'));
  }

  /** @internal Wraps a stream of entries with this filter. */
  *apply(source: Stream): Stream {
    interface Visited {
      node: Node;
      prefix: string;
      include: MatchInfo;
      exclude: MatchInfo;
      /** Already handed on (or vanished while being handed on). */
      called: boolean;
      /** The consumer asked to skip it after it was reported late. */
      skipped: boolean;
    }
    const active = this.include !== undefined || this.exclude !== undefined;
    const parents: Visited[] = [];
    let reply: WalkReply;
    try {
      for (;;) {
        const next = source.next(reply);
        reply = undefined;
        if (next.done) return;
        const node = next.value;
        const isDir = node.isDir;
        if (active) {
          while (parents.length > 0 && !node.path.startsWith(parents[parents.length - 1]!.prefix)) parents.pop();
        }
        const parent = parents.length > 0 ? parents[parents.length - 1] : undefined;
        const visited: Visited | undefined = isDir
          ? { node, prefix: node.path + '/', include: MatchInfo.none, exclude: MatchInfo.none, called: false, skipped: false }
          : undefined;
        let skip = false;

        if (this.include) {
          const r = this.include.matchesUsingParentResults(node.path, parent?.include);
          if (visited) visited.include = r.info;
          if (!r.matched) {
            if (isDir && this.onlyPrefixIncludes && !this.includeMayMatchBelow(node.path)) {
              reply = SKIP_DIR;
              continue;
            }
            skip = true;
          }
        }
        if (this.exclude) {
          const r = this.exclude.matchesUsingParentResults(node.path, parent?.exclude);
          if (visited) visited.exclude = r.info;
          if (r.matched) {
            if (isDir && this.onlyPrefixExcludeExceptions) {
              if (!this.exclude.exclusions() || !this.exceptionMayMatchBelow(node.path)) {
                reply = SKIP_DIR;
                continue;
              }
            }
            skip = true;
          }
        }

        if (node.error) {
          // An unreadable directory only matters if it is part of the context.
          if (skip && (node.error.code === 'EACCES' || node.error.code === 'EPERM')) continue;
          if (isNotExist(node.error)) {
            reply = SKIP_DIR;
            continue;
          }
          throw new InputFileError(node.path, `cannot read directory: ${node.error.message}`, { cause: node.error });
        }

        // From here on, a directory becomes the parent of what follows, whatever happens below.
        try {
          if (skip) continue;
          if (visited) visited.called = true;
          if (!statsOrSkip(node)) {
            reply = SKIP_DIR;
            continue;
          }
          let cut = false;
          for (const p of parents) {
            if (p.skipped) {
              cut = true;
              break;
            }
            if (p.called) continue;
            if (!statsOrSkip(p.node)) {
              cut = true;
              break;
            }
            p.called = true;
            if ((yield p.node) === SKIP_DIR) {
              p.skipped = true;
              cut = true;
              break;
            }
          }
          if (cut) {
            reply = SKIP_DIR;
            continue;
          }
          reply = yield node;
        } finally {
          if (visited && active) parents.push(visited);
        }
      }
    } finally {
      source.return(undefined);
    }
  }
}

/** Loads an entry's stats; false when it vanished meanwhile (BuildKit then skips the rest of its directory). */
function statsOrSkip(node: Node): boolean {
  try {
    node.stats();
    return true;
  } catch (err) {
    if (isNotExist(err)) return false;
    if (err instanceof InputFileError) throw err;
    throw new InputFileError(node.path, `cannot stat: ${(err as Error).message}`, { cause: err });
  }
}

function isNotExist(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  return code === 'ENOENT' || code === 'ENOTDIR';
}

interface Frame {
  readonly abs: string;
  readonly rel: string;
  readonly entries: readonly Dirent[];
  readonly badNames: ReadonlySet<string> | undefined;
  next: number;
}

/**
 * The walk is synchronous: on a local disk an `lstat` or a directory listing takes a few
 * microseconds, several times less than the thread-pool round trip and the promise of the
 * asynchronous form, which would dominate the walk of a big context (a no-op rebuild of 20,000
 * files is mostly this walk).
 */
function lazyStats(frame: Frame, name: string): () => Stats {
  let stats: Stats | undefined;
  return () => {
    if (stats === undefined) {
      if (frame.badNames?.has(name)) {
        throw new InputFileError(`${frame.abs}/${name}`, 'file name is not valid UTF-8, which kiln cannot represent');
      }
      stats = lstatSync(`${frame.abs}/${name}`);
    }
    return stats;
  };
}

function listDir(abs: string, rel: string): Frame {
  const entries = readdirSync(abs, { withFileTypes: true });
  entries.sort((a, b) => compareNames(a.name, b.name));
  let badNames: Set<string> | undefined;
  if (entries.some((e) => e.name.includes('\uFFFD'))) {
    // Node replaced undecodable bytes; find the names that really are not UTF-8.
    const raw = readdirSync(abs, { encoding: 'buffer' });
    for (const name of raw) {
      if (!isUtf8(name)) (badNames ??= new Set()).add(Buffer.from(name).toString('utf8'));
    }
  }
  return { abs, rel, entries, badNames, next: 0 };
}

/** The unfiltered walk: Go's `filepath.WalkDir` order, root itself not reported. */
function* walkTree(rootFrame: Frame): Stream {
  const stack: Frame[] = [rootFrame];
  while (stack.length > 0) {
    const frame = stack[stack.length - 1]!;
    if (frame.next >= frame.entries.length) {
      stack.pop();
      continue;
    }
    const dirent = frame.entries[frame.next++]!;
    const rel = frame.rel === '' ? dirent.name : `${frame.rel}/${dirent.name}`;
    const isDir = dirent.isDirectory() && !frame.badNames?.has(dirent.name);
    const node: Node = { path: rel, isDir, stats: lazyStats(frame, dirent.name) };
    const reply = yield node;
    if (reply === SKIP_DIR) {
      if (!isDir) frame.next = frame.entries.length;
      continue;
    }
    if (!isDir) continue;
    try {
      stack.push(listDir(`${frame.abs}/${dirent.name}`, rel));
    } catch (err) {
      // Reported as a second visit of the directory, which the filter decides about.
      yield { ...node, error: err as NodeJS.ErrnoException };
    }
  }
}

/**
 * The unfiltered walk without generators, for the common case of a context with no ignore rules:
 * the same entries in the same order as {@link walk} with no patterns, with the same handling of
 * entries that vanish meanwhile and the same errors. `visit` gets the token its parent directory
 * returned (the root's is `rootToken`) and returns the one for the entry's own children.
 */
export function walkUnfiltered<T>(root: string, rootToken: T, visit: (parent: T, path: string, name: string, stats: Stats) => T): void {
  const stack: Frame[] = [openRoot(root)];
  const tokens: T[] = [rootToken];
  while (stack.length > 0) {
    const frame = stack[stack.length - 1]!;
    if (frame.next >= frame.entries.length) {
      stack.pop();
      tokens.pop();
      continue;
    }
    const dirent = frame.entries[frame.next++]!;
    const name = dirent.name;
    const rel = frame.rel === '' ? name : `${frame.rel}/${name}`;
    const isDir = dirent.isDirectory() && !frame.badNames?.has(name);
    let stats: Stats;
    try {
      stats = lazyStats(frame, name)();
    } catch (err) {
      // As statsOrSkip: a vanished entry ends its directory's listing (for a file) or is skipped.
      if (isNotExist(err)) {
        if (!isDir) frame.next = frame.entries.length;
        continue;
      }
      if (err instanceof InputFileError) throw err;
      throw new InputFileError(rel, `cannot stat: ${(err as Error).message}`, { cause: err });
    }
    const token = visit(tokens[tokens.length - 1]!, rel, name, stats);
    if (!isDir) continue;
    let sub: Frame;
    try {
      sub = listDir(`${frame.abs}/${name}`, rel);
    } catch (err) {
      if (isNotExist(err)) continue;
      throw new InputFileError(rel, `cannot read directory: ${(err as Error).message}`, { cause: err });
    }
    stack.push(sub);
    tokens.push(token);
  }
}

/** Resolves the context root like fsutil: symlinks followed, must be a directory. */
function openRoot(root: string): Frame {
  let real: string;
  try {
    real = realpathSync(root);
    if (!statSync(real).isDirectory()) throw new InputFileError(root, 'build context is not a directory');
  } catch (err) {
    if (err instanceof InputFileError) throw err;
    throw new InputFileError(root, `cannot open build context: ${(err as Error).message}`, { cause: err });
  }
  try {
    return listDir(real, '');
  } catch (err) {
    throw new InputFileError(root, `cannot read build context: ${(err as Error).message}`, { cause: err });
  }
}

export type FilterSpec = FilterOptions | WalkFilter;

function toFilter(spec: FilterSpec): WalkFilter {
  return spec instanceof WalkFilter ? spec : new WalkFilter(spec);
}

/**
 * Walks `root` (a directory; a symlink to one is resolved) and yields what BuildKit would send for
 * it, in the same order. `filters` is one filter or several stacked ones, innermost first (each
 * sees only what the previous one let through). Paths are relative and `/`-separated.
 *
 * `for await` visits everything. To prune, call `next(SKIP_DIR)` after a directory was yielded
 * (after a file: its remaining siblings are skipped, like Go's `fs.SkipDir`).
 * @throws IgnorePatternError for invalid patterns (before anything is read, or when an invalid
 *   pattern is first evaluated); InputFileError when the root or an included directory cannot be read.
 */
export async function* walk(
  root: string,
  filters: FilterSpec | readonly FilterSpec[] = {},
): AsyncGenerator<WalkEntry, void, WalkReply> {
  const it = walkSync(root, filters);
  let reply: WalkReply;
  try {
    for (;;) {
      const next = it.next(reply);
      if (next.done) return;
      reply = yield next.value;
    }
  } finally {
    it.return(undefined);
  }
}

/** {@link walk} without the event loop: the same entries, order, replies and errors, synchronously. */
export function* walkSync(root: string, filters: FilterSpec | readonly FilterSpec[] = {}): Generator<WalkEntry, void, WalkReply> {
  const list = (Array.isArray(filters) ? filters : [filters]) as readonly FilterSpec[];
  const compiled = list.length > 0 ? list.map(toFilter) : [new WalkFilter()];
  let stream: Stream = walkTree(openRoot(root));
  for (const f of compiled) stream = f.apply(stream);
  let reply: WalkReply;
  try {
    for (;;) {
      const next = stream.next(reply);
      if (next.done) return;
      const node = next.value;
      reply = yield { path: node.path, stats: node.stats() };
    }
  } finally {
    stream.return(undefined);
  }
}

/**
 * Callback form of {@link walk}: `visit` may return (or resolve to) {@link SKIP_DIR}.
 */
export async function visitWalk(
  root: string,
  filters: FilterSpec | readonly FilterSpec[],
  visit: (entry: WalkEntry) => WalkReply | Promise<WalkReply>,
): Promise<void> {
  const it = walk(root, filters);
  let reply: WalkReply;
  for (;;) {
    const next = await it.next(reply);
    if (next.done) return;
    reply = await visit(next.value);
  }
}
