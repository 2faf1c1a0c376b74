/**
 * A build context: the directory as BuildKit would receive it (ignore rules applied), with the
 * content checksums its COPY cache keys are made of, and a persistent stat cache so that an
 * unchanged file is read once, ever.
 *
 * The tree is scanned once, on first use, and then stands for the context for the life of the
 * object, as BuildKit's transferred copy does for one build: a file is judged unchanged by the stat
 * the scan took. Digests are computed lazily, only for what a checksum asks for; files are hashed
 * concurrently (worker threads for big batches).
 */
import { createHash } from 'node:crypto';
import { lstatSync, statSync, type BigIntStats, type Stats } from 'node:fs';
import { readFile, realpath } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { join, resolve } from 'node:path';
import pLimit from 'p-limit';
import { InputFileError } from '../errors.js';
import type { Digest } from '../oci/digest.js';
import {
  EMPTY_DIGEST,
  directoryDigest,
  entryHeader,
  entryTypeOf,
  fileListDigest,
  headerDigest,
  readHashedXattrs,
  type EntryType,
} from './checksum.js';
import { DigestIndex, nsToMs, stampKey } from './digest-index.js';
import { ContextPathNotFoundError } from './errors.js';
import { GoPattern, containsWildcards, splitWildcards } from './gomatch.js';
import { HashPool, hashInline, sameStamp, stampOf, type FileStamp, type HashJob, type HashOutcome } from './hasher.js';
import { WalkFilter, findIgnoreFile, walk, type IgnoreFile } from './ignore/index.js';
import { contextPath, resolveIn } from './resolve.js';
import { descendants, scanContext, type ContextNode, type ContextTree, type StatLike } from './scan.js';

export interface OpenContextOptions {
  /**
   * The Dockerfile as the user named it (`-f`), relative to the working directory; `-` for stdin.
   * Only used to find `<Dockerfile>.dockerignore`. Default `<dir>/Dockerfile`.
   */
  dockerfilePath?: string;
  /** Ignore rules to apply; `null` for none. Default: what {@link findIgnoreFile} finds. */
  ignoreFile?: IgnoreFile | null;
  /** Where the persistent digest index lives (`<cacheDir>/context-index/`). */
  cacheDir: string;
  /** Hashing threads for big batches; 0 hashes on the main thread only. Default: one per core. */
  workers?: number;
  /** Called with the context path of every file whose content is about to be read. */
  onContentRead?: (path: string) => void;
}

export interface ChecksumOptions {
  /** Follow a symlink named by the path itself (or matched by its wildcard); inner links never are. */
  followLinks?: boolean;
  /** Expand `*`, `?` and `[...]` (Go `path.Match`) when the path has any, as COPY does. Default true. */
  wildcard?: boolean;
}

export interface ContextEntry {
  /** Relative to the context root, `/`-separated. */
  readonly path: string;
  readonly type: EntryType;
  /** `lstat` result: symlinks are reported as themselves. */
  readonly stats: Stats;
}

/** Per-file digests; directories appear as `dir/` with the digest of their own metadata. */
export type ContextManifest = Record<string, Digest>;

export interface ManifestChanges {
  added: string[];
  removed: string[];
  changed: string[];
}

export interface ContextStats {
  /** Files whose content was read (hashed). */
  filesRead: number;
  /** Files whose digest came from the persistent index. */
  indexHits: number;
}

/** Batches at least this big (files or bytes) go to the worker pool; smaller ones stay on the main thread. */
const POOL_MIN_FILES = 64;
const POOL_MIN_BYTES = 16 * 1024 * 1024;
/** Files read at once on the main thread. */
const INLINE_CONCURRENCY = 8;
/** A file that keeps changing while read is given up on after this many attempts. */
const MAX_ATTEMPTS = 4;

/**
 * What a regular file is taken to be while it is hashed: its header is built from this, and a read
 * counts only if the file agrees with it. Normally the walk's stat (the node itself, `undefined`
 * here); a full-precision stat when the walk's numbers are too big to be exact, or once the file
 * has been seen to change.
 */
type Exact = FileStamp | undefined;

/** Whether the walk's stat of `st` is exact enough to stand for the file. */
function walkIsExact(st: StatLike): boolean {
  return Number.isSafeInteger(st.dev) && Number.isSafeInteger(st.ino) && Number.isSafeInteger(st.size);
}

function basisMatches(node: StatLike, exact: Exact, s: FileStamp): boolean {
  if (exact) return sameStamp(s, exact);
  return (
    Number(s.dev) === node.dev &&
    Number(s.ino) === node.ino &&
    Number(s.mode) === node.mode &&
    Number(s.size) === node.size &&
    nsToMs(s.mtimeNs) === node.mtimeMs &&
    nsToMs(s.ctimeNs) === node.ctimeMs
  );
}

/** One unit of a checksum: a path as the hash names it, and what it stands for. */
interface Item {
  /** Path as the checksum names it: relative to the wildcard's fixed prefix, starting with `/`. */
  readonly rel: string;
  /** Display path (the pattern's spelling, through symlinks as written). */
  readonly display: string;
  readonly node: ContextNode;
  /** `header`: a directory's own metadata only; `whole`: the entry with everything below it. */
  readonly scope: 'header' | 'whole';
}

export class BuildContext {
  /** Counters for diagnostics and benchmarks. */
  readonly stats: ContextStats = { filesRead: 0, indexHits: 0 };
  private treePromise: Promise<ContextTree> | undefined;
  private indexPromise: Promise<DigestIndex> | undefined;
  /** The index once loaded (header digests look it up synchronously). */
  private loadedIndex: DigestIndex | undefined;
  private pool: HashPool | undefined;
  private readonly inlineLimit = pLimit(INLINE_CONCURRENCY);
  private flushChain: Promise<void> = Promise.resolve();
  private flushQueued = false;
  private closed = false;

  /** @internal use {@link openContext}. */
  constructor(
    /** The context directory with symlinks resolved. */
    readonly root: string,
    private readonly rootStats: Stats,
    /** The Dockerfile path (absolute), or undefined when it comes from stdin. */
    readonly dockerfilePath: string | undefined,
    /** The ignore file applied, if any. */
    readonly ignoreFile: IgnoreFile | undefined,
    private readonly filter: WalkFilter,
    private readonly indexFile: string,
    private readonly workers: number,
    private readonly onContentRead: ((path: string) => void) | undefined,
  ) {}

  /** The exclude patterns in force (from the ignore file). */
  get excludePatterns(): readonly string[] {
    return this.ignoreFile?.patterns ?? [];
  }

  /**
   * The Dockerfile's bytes. The frontend reads it even when the ignore rules exclude it from the
   * context (BuildKit sends it separately); COPY still sees the context as filtered.
   */
  async readDockerfile(): Promise<Buffer> {
    if (this.dockerfilePath === undefined) throw new InputFileError('-', 'the Dockerfile comes from stdin, not from the context');
    try {
      return await readFile(this.dockerfilePath);
    } catch (err) {
      throw new InputFileError(this.dockerfilePath, `cannot read Dockerfile: ${(err as Error).message}`, { cause: err });
    }
  }

  /**
   * What BuildKit would receive, in the order it would: pre-order, names in byte order, streamed
   * from a fresh walk (the scan behind the checksums keeps only the numbers it needs).
   */
  async *entries(): AsyncGenerator<ContextEntry> {
    for await (const e of walk(this.root, this.filter)) {
      yield { path: e.path, type: entryTypeOf(e.stats.mode), stats: e.stats };
    }
  }

  /**
   * Whether `path` is in the (filtered) context; intermediate symlinks are followed, the last one
   * only with `followLinks`.
   * @throws ContextSymlinkEscapeError when a link it must follow leaves the context.
   */
  async exists(path: string, options: { followLinks?: boolean } = {}): Promise<boolean> {
    return resolveIn(await this.tree(), path, options.followLinks ?? false).node !== undefined;
  }

  /**
   * Resolves `path` through the context's symlinks (the context directory acting as `/`), the last
   * element too unless `followLinks` is false. Returns the context-relative result (`.` for the
   * root), which need not exist.
   * @throws ContextSymlinkEscapeError naming the link when resolution would leave the context.
   */
  async resolveInContext(path: string, options: { followLinks?: boolean } = {}): Promise<string> {
    const r = resolveIn(await this.tree(), path, options.followLinks ?? true);
    return r.path === '' ? '.' : r.path;
  }

  /**
   * The content checksum of a COPY source, as BuildKit's contenthash computes it: a file by its
   * content and metadata (never its times), a directory recursively over what the ignore rules let
   * in, a wildcard over its matches in order.
   * @throws ContextPathNotFoundError when a non-wildcard path (or a followed link) does not exist;
   *   ContextSymlinkEscapeError, ContextPatternError; InputFileError for unreadable files.
   */
  async checksum(path: string, options: ChecksumOptions = {}): Promise<Digest> {
    const pattern = '/' + contextPath(path);
    const tree = pattern === '/' ? await this.treeForWholeContext() : await this.tree();
    const index = await this.index();
    try {
      if (!((options.wildcard ?? true) && containsWildcards(pattern))) {
        const r = resolveIn(tree, pattern, options.followLinks ?? false);
        if (!r.node) throw new ContextPathNotFoundError(path);
        await this.prepare([r.node]);
        return this.digestOf(r.node);
      }
      const items = this.expandWildcard(tree, pattern, options.followLinks ?? false);
      await this.prepare(items.filter((i) => i.scope === 'whole').map((i) => i.node));
      if (items.length === 0) return EMPTY_DIGEST;
      const digests = items.map((i) => (i.scope === 'header' ? this.headerOf(i.node) : this.digestOf(i.node)));
      if (items.length === 1 && basename(pattern) === basename(items[0]!.display)) return digests[0]!;
      return fileListDigest(items.map((i, n) => [i.rel, digests[n]!]));
    } finally {
      if (index.isDirty) this.scheduleFlush(index);
    }
  }

  /**
   * Per-file digests of what the given sources cover (same rules as {@link checksum}), keyed by
   * context path, so a later run can say which files changed. Keep it beside a cache record and
   * compare with {@link changedFiles}.
   */
  async manifest(paths: string | readonly string[], options: ChecksumOptions = {}): Promise<ContextManifest> {
    const list = typeof paths === 'string' ? [paths] : paths;
    const tree = list.some((p) => contextPath(p) === '') ? await this.treeForWholeContext() : await this.tree();
    await this.index();
    const roots: Array<{ node: ContextNode; scope: Item['scope'] }> = [];
    for (const path of list) {
      const pattern = '/' + contextPath(path);
      if (!((options.wildcard ?? true) && containsWildcards(pattern))) {
        const r = resolveIn(tree, pattern, options.followLinks ?? false);
        if (!r.node) throw new ContextPathNotFoundError(path);
        roots.push({ node: r.node, scope: 'whole' });
      } else {
        for (const i of this.expandWildcard(tree, pattern, options.followLinks ?? false)) roots.push(i);
      }
    }
    await this.prepare(roots.filter((r) => r.scope === 'whole').map((r) => r.node));
    const out: ContextManifest = {};
    const add = (n: ContextNode): void => {
      if (n.type === 'dir') {
        if (n.path !== '') out[`${n.path}/`] = this.headerOf(n);
      } else {
        out[n.path] = this.digestOf(n);
      }
    };
    for (const r of roots) {
      add(r.node);
      if (r.scope === 'whole') for (const d of descendants(r.node)) add(d);
    }
    if (this.loadedIndex?.isDirty) this.scheduleFlush(this.loadedIndex);
    return Object.fromEntries(Object.entries(out).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
  }

  /** What changed between a manifest taken earlier and the context now, over the same sources. */
  async changedFiles(previous: ContextManifest, paths: string | readonly string[], options: ChecksumOptions = {}): Promise<ManifestChanges> {
    return diffManifests(previous, await this.manifest(paths, options));
  }

  /** Writes the digest index now if anything new was hashed. @throws on write failure. */
  async flush(): Promise<void> {
    await this.flushChain;
    if (!this.indexPromise) return;
    const index = await this.indexPromise;
    if (index.isDirty) await index.save(this.liveKeys(await this.tree()));
  }

  /** Saves the index (best effort: it is a cache) and stops the hashing threads. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.flush().catch(() => undefined);
    const pool = this.pool;
    this.pool = undefined;
    await pool?.close();
  }

  // -- scanning ----------------------------------------------------------------------------------

  private tree(): Promise<ContextTree> {
    this.treePromise ??= scanContext(this.root, this.rootStats, this.filter);
    return this.treePromise;
  }

  /**
   * The tree, for a request that covers the whole context: if it still has to be scanned, every
   * file is looked up or sent for hashing as the walk finds it, so the hashing threads work while
   * the walk goes on instead of after it.
   */
  private async treeForWholeContext(): Promise<ContextTree> {
    if (this.treePromise) return this.treePromise;
    const index = await this.index();
    if (this.treePromise) return this.treePromise;
    const batch = this.digestBatch(index);
    const scanned = scanContext(this.root, this.rootStats, this.filter, (node) => batch.add(node));
    this.treePromise = scanned;
    const tree = await scanned;
    await batch.finish();
    return tree;
  }

  private index(): Promise<DigestIndex> {
    this.indexPromise ??= DigestIndex.open(this.indexFile, this.root).then((index) => {
      this.loadedIndex = index;
      return index;
    });
    return this.indexPromise;
  }

  /**
   * BuildKit's wildcard expansion over the tree. Entries are visited in key order; an entry whose
   * path matches the pattern is taken with everything below it (a directory as its own header
   * followed by its descendants, each directory again as a header), and directories that do not
   * match are searched for deeper matches. A matched symlink is replaced by its target when
   * following links.
   */
  private expandWildcard(tree: ContextTree, pattern: string, followLinks: boolean): Item[] {
    const matcher = new GoPattern(pattern);
    const [fixed] = splitWildcards(pattern);
    let base: ContextNode | undefined;
    let prefix = '';
    if (fixed === '/') {
      base = tree.root;
    } else {
      prefix = fixed;
      base = resolveIn(tree, fixed, true).node;
      if (!base || base.type !== 'dir') return [];
    }
    // A match has as many elements as the pattern, so deeper directories need not be searched;
    // unless a character class could match `/` itself.
    const depth = pattern.includes('[') ? Infinity : pattern.split('/').length - 1;
    const baseDepth = prefix === '' ? 0 : prefix.split('/').length - 1;
    const items: Item[] = [];
    const takeAll = (n: ContextNode, display: string): void => {
      for (const d of [n, ...descendants(n)]) {
        const shown = d === n ? display : `${display}/${d.path.slice(n.path.length + (n.path === '' ? 0 : 1))}`;
        items.push({ rel: shown.slice(prefix.length), display: shown, node: d, scope: d.type === 'dir' ? 'header' : 'whole' });
      }
    };
    const visit = (dir: ContextNode, displayDir: string, level: number): void => {
      for (const child of dir.children) {
        const display = `${displayDir}/${child.name}`;
        if (matcher.matches(display)) {
          if (followLinks && child.type === 'symlink') {
            const target = resolveIn(tree, display, true).node;
            if (!target) throw new ContextPathNotFoundError(display.slice(1));
            items.push({ rel: display.slice(prefix.length), display, node: target, scope: 'whole' });
          } else {
            takeAll(child, display);
          }
        } else if (child.type === 'dir' && level + 1 < depth) {
          visit(child, display, level + 1);
        }
      }
    };
    visit(base, prefix, baseDepth);
    return items;
  }

  // -- digests -----------------------------------------------------------------------------------

  /** Ensures every regular file at or below `nodes` has its digest. */
  private async prepare(nodes: readonly ContextNode[]): Promise<void> {
    const files: ContextNode[] = [];
    const seen = new Set<ContextNode>();
    for (const n of nodes) {
      if (seen.has(n)) continue;
      seen.add(n);
      if (n.type === 'file') files.push(n);
      else if (n.type === 'dir' && n.digest === undefined) {
        for (const d of descendants(n)) if (d.type === 'file' && d.digest === undefined) files.push(d);
      }
    }
    if (files.length === 0) return;
    const batch = this.digestBatch(await this.index());
    for (const f of files) batch.add(f);
    await batch.finish();
  }

  /**
   * Gives files their digests: from the index when it can be trusted, else by hashing. Misses are
   * held back until there are enough of them to be worth the worker pool; from then on each is
   * dispatched as soon as it is found, so hashing overlaps whatever is still finding files.
   */
  private digestBatch(index: DigestIndex): { add(node: ContextNode): void; finish(): Promise<void> } {
    // Taken before any metadata the entries will be recorded with is read (see DigestIndex).
    const hashedAtMs = Date.now();
    const waits: Array<Promise<void>> = [];
    let held: Array<{ node: ContextNode; exact: Exact }> | undefined = [];
    let heldBytes = 0;
    const start = (node: ContextNode, exact: Exact, usePool: boolean): void => {
      const p = this.hashFile(index, node, exact, hashedAtMs, usePool);
      p.catch(() => undefined); // reported by whoever awaits it; never left unhandled
      node.pending = p;
      waits.push(p);
    };
    return {
      add: (node) => {
        if (node.digest !== undefined) return;
        if (node.pending) {
          waits.push(node.pending);
          return;
        }
        // The walk's stat is normally enough; a full-precision one only when its numbers are not.
        let exact: Exact;
        let cached: Digest | undefined;
        if (walkIsExact(node)) {
          cached = index.lookupStats(node);
        } else {
          exact = stampOf(this.lstatFile(node));
          cached = index.lookup(exact);
        }
        if (cached) {
          node.digest = cached;
          this.stats.indexHits++;
        } else if (held === undefined) {
          start(node, exact, true);
        } else {
          held.push({ node, exact });
          heldBytes += node.size;
          if (this.workers > 0 && (held.length >= POOL_MIN_FILES || heldBytes >= POOL_MIN_BYTES)) {
            for (const m of held) start(m.node, m.exact, true);
            held = undefined;
          }
        }
      },
      finish: async () => {
        for (const m of held ?? []) start(m.node, m.exact, false);
        held = undefined;
        await Promise.all(waits);
        if (index.isDirty) this.scheduleFlush(index);
      },
    };
  }

  /** Full-precision `lstat` of a file found by the scan, which must still be a regular file. */
  private lstatFile(node: ContextNode): BigIntStats {
    let st: BigIntStats;
    try {
      st = lstatSync(join(this.root, node.path), { bigint: true });
    } catch (err) {
      throw new InputFileError(node.path, `changed while the build was reading the context: ${(err as Error).message}`, { cause: err });
    }
    if (entryTypeOf(Number(st.mode)) !== 'file') {
      throw new InputFileError(node.path, 'was replaced by something else while the build was reading the context');
    }
    return st;
  }

  /**
   * Reads and hashes one file, built and checked against what it is believed to be (`exact`, or
   * else the walk's stat): the read counts only if the file's metadata was the same before and
   * after it and agrees with that; otherwise the file is examined afresh and read again.
   * Remembers the result.
   */
  private async hashFile(index: DigestIndex, node: ContextNode, exact: Exact, hashedAtMs: number, usePool: boolean): Promise<void> {
    try {
      const abs = join(this.root, node.path);
      // Workers check for xattrs themselves (most files have none); otherwise they are read here.
      let assumeNoXattrs = usePool;
      let announced = false;
      for (let attempt = 1; ; attempt++) {
        const mode = exact ? Number(exact.mode) : node.mode;
        const size = exact ? exact.size : BigInt(node.size);
        let xattrs: Array<[string, Buffer]> = [];
        if (!assumeNoXattrs || size === 0n) {
          try {
            xattrs = readHashedXattrs(abs, node.path);
          } catch (err) {
            if (err instanceof InputFileError) throw err; // else vanished: the metadata comparison notices
          }
        }
        const header = entryHeader({ mode, size, rdev: 0, xattrs });
        let outcome: HashOutcome;
        if (size === 0n) {
          // Nothing to read: the header is the whole record; a fresh stat confirms the basis.
          const now = lstatSync(abs, { bigint: true, throwIfNoEntry: false });
          outcome = now
            ? { kind: 'ok', digest: `sha256:${createHash('sha256').update(header).digest('hex')}`, before: stampOf(now), after: stampOf(now) }
            : { kind: 'changed' };
        } else {
          if (!announced) {
            announced = true;
            this.stats.filesRead++;
            this.onContentRead?.(node.path);
          }
          const job: HashJob = { abs, header, size, assumeNoXattrs };
          outcome = usePool ? await this.hashPool().hash(job) : await this.inlineLimit(() => hashInline(job));
        }
        switch (outcome.kind) {
          case 'ok':
            if (sameStamp(outcome.before, outcome.after) && basisMatches(node, exact, outcome.before)) {
              node.digest = outcome.digest;
              node.key = stampKey(outcome.before);
              index.record(outcome.before, outcome.digest, hashedAtMs);
              return;
            }
            break;
          case 'xattrs':
            assumeNoXattrs = false;
            attempt--; // not a change, just a header that needs them
            continue;
          case 'error':
            throw new InputFileError(node.path, `cannot read: ${outcome.message}`);
          case 'changed':
            break;
        }
        if (attempt >= MAX_ATTEMPTS) throw new InputFileError(node.path, 'keeps changing while the build reads it');
        hashedAtMs = Date.now();
        exact = stampOf(this.lstatFile(node));
      }
    } finally {
      node.pending = undefined;
    }
  }

  private hashPool(): HashPool {
    this.pool ??= new HashPool(this.workers);
    return this.pool;
  }

  /** The checksum of a prepared node: a file's record, a symlink's header, a directory's recursive digest. */
  private digestOf(node: ContextNode): Digest {
    if (node.digest !== undefined) return node.digest;
    switch (node.type) {
      case 'file':
        throw new Error(`internal: ${node.path} was not hashed`);
      case 'dir': {
        // Iterative post-order, so deep trees do not exhaust the stack.
        const stack: Array<{ node: ContextNode; next: number }> = [{ node, next: 0 }];
        while (stack.length > 0) {
          const top = stack[stack.length - 1]!;
          const child = top.node.children[top.next];
          if (child && child.type === 'dir' && child.digest === undefined) {
            stack.push({ node: child, next: 0 });
            continue;
          }
          if (child) {
            top.next++;
            continue;
          }
          stack.pop();
          top.node.digest = directoryDigest(
            this.headerOf(top.node),
            top.node.children.map((c) => [c.name, this.digestOf(c)] as const),
          );
        }
        return node.digest!;
      }
      default:
        node.digest = this.headerOf(node);
        return node.digest;
    }
  }

  /** A directory's, symlink's or special file's own header digest (the root's is BuildKit's placeholder). */
  private headerOf(node: ContextNode): Digest {
    if (node.header !== undefined) return node.header;
    if (node.path === '') {
      node.header = EMPTY_DIGEST;
      return node.header;
    }
    // Directories and symlinks are remembered in the index like files (their xattrs are the only
    // part of the header not in the stat, and changing them changes ctime), so a rebuild reads none.
    const index = this.loadedIndex;
    if (index && walkIsExact(node)) {
      const cached = index.lookupStats(node);
      if (cached) {
        node.header = cached;
        return cached;
      }
    }
    const abs = join(this.root, node.path);
    const hashedAtMs = Date.now();
    const before = index ? lstatSync(abs, { bigint: true, throwIfNoEntry: false }) : undefined;
    let xattrs: Array<[string, Buffer]> = [];
    try {
      xattrs = readHashedXattrs(abs, node.path);
    } catch (err) {
      if (err instanceof InputFileError) throw err;
      throw new InputFileError(node.path, 'was removed while the build was reading the context', { cause: err });
    }
    node.header = headerDigest({
      mode: node.mode,
      size: node.size,
      rdev: node.rdev,
      linkTarget: node.targetBytes,
      xattrs,
    });
    if (index && before) {
      // Remembered only when the entry stood still while its xattrs were read, and is what the walk saw.
      const after = lstatSync(abs, { bigint: true, throwIfNoEntry: false });
      const stamp = stampOf(before);
      if (after && sameStamp(stamp, stampOf(after)) && basisMatches(node, undefined, stamp)) {
        index.record(stamp, node.header, hashedAtMs);
        node.key = stampKey(stamp);
      }
    }
    return node.header;
  }

  // -- persistence -------------------------------------------------------------------------------

  /** Index keys of the entries in the context (files, directories, symlinks): those the index may keep. */
  private liveKeys(tree: ContextTree): Set<string> {
    const keys = new Set<string>();
    for (const n of tree.byPath.values()) {
      if (n.path === '') continue;
      // Files not examined in this session are known only from the walk's (double precision) stat.
      keys.add(n.key ?? stampKey(n));
    }
    return keys;
  }

  /** Saves the index in the background, coalescing requests that arrive while one waits. */
  private scheduleFlush(index: DigestIndex): void {
    if (this.flushQueued || this.closed) return;
    this.flushQueued = true;
    this.flushChain = this.flushChain.then(async () => {
      this.flushQueued = false;
      try {
        await index.save(this.liveKeys(await this.tree()));
      } catch {
        // Only a cache: the next save tries again, and a lost index costs re-reading.
      }
    });
  }
}

function basename(p: string): string {
  return p.slice(p.lastIndexOf('/') + 1);
}

/** Paths added, removed and changed from `before` to `after`, each sorted. */
export function diffManifests(before: ContextManifest, after: ContextManifest): ManifestChanges {
  const added: string[] = [];
  const removed: string[] = [];
  const changed: string[] = [];
  for (const [p, d] of Object.entries(after)) {
    if (!(p in before)) added.push(p);
    else if (before[p] !== d) changed.push(p);
  }
  for (const p of Object.keys(before)) if (!(p in after)) removed.push(p);
  return { added: added.sort(), removed: removed.sort(), changed: changed.sort() };
}

/**
 * Opens the build context at `dir`: finds the ignore file (unless given), checks the patterns, and
 * locates the digest index. Nothing is walked or read until something asks.
 * @throws InputFileError when `dir` is not a readable directory or the ignore file cannot be read;
 *   IgnorePatternError for invalid patterns.
 */
export async function openContext(dir: string, options: OpenContextOptions): Promise<BuildContext> {
  let root: string;
  let rootStats: Stats;
  try {
    root = await realpath(resolve(dir));
    rootStats = statSync(root);
  } catch (err) {
    throw new InputFileError(dir, `cannot open build context: ${(err as Error).message}`, { cause: err });
  }
  if (!rootStats.isDirectory()) throw new InputFileError(dir, 'build context is not a directory');
  const ignoreFile =
    options.ignoreFile === null ? undefined : (options.ignoreFile ?? (await findIgnoreFile(root, options.dockerfilePath)));
  const filter = new WalkFilter({ excludePatterns: ignoreFile?.patterns ?? [] });
  const dockerfilePath =
    options.dockerfilePath === '-' ? undefined : options.dockerfilePath === undefined ? join(root, 'Dockerfile') : resolve(options.dockerfilePath);
  const id = createHash('sha256').update(root).digest('hex').slice(0, 32);
  const indexFile = join(resolve(options.cacheDir), 'context-index', `${id}.json`);
  return new BuildContext(
    root,
    rootStats,
    dockerfilePath,
    ignoreFile,
    filter,
    indexFile,
    options.workers ?? availableWorkers(),
    options.onContentRead,
  );
}

function availableWorkers(): number {
  return Math.max(1, Math.min(8, availableParallelism()));
}
