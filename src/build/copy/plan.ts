/**
 * COPY and ADD as BuildKit carries them out (dockerfile2llb's dispatchCopy → FileOp copy actions →
 * fsutil's copier), computed as the list of entries of the new layer instead of as changes to a
 * mounted rootfs.
 *
 * Per instruction: the destination is taken relative to WORKDIR with a trailing `/` (or `/.`) kept;
 * every source is checked first (a missing path fails with buildx's "failed to calculate checksum"
 * wording before anything is copied); then each source is copied in order (paths, URLs and git
 * references as written, then heredocs), each one seeing what the earlier ones planned.
 *
 * Per source (fsutil's Copy with CopyDirContents and FollowSymlinks):
 *  - a wildcard is expanded with path.Match below its literal prefix; no match is not an error;
 *  - the top-level source (each match) is followed if it is a symlink; everything below is copied
 *    as it is (symlinks stay symlinks, hardlinks stay hardlinks);
 *  - the destination is resolved through the rootfs's symlinks inside the rootfs; a destination
 *    ending in `/` is created as a directory first, otherwise only its parent is;
 *  - a file goes into an existing directory under its own name, otherwise to the destination path;
 *    a directory's contents go into the destination;
 *  - directories created on the way get --chmod's octal bits (else 0755) and --chown's owner (else
 *    root); an existing destination directory keeps its mode and owner and takes the source
 *    directory's time; sub-directories that already exist take the source's metadata;
 *  - copied nodes keep their mode, owner and time unless --chmod / --chown say otherwise; context
 *    files are owned by 0:0 (the context arrives that way);
 *  - --exclude and --parents' patterns are matched on the path below the source, with
 *    patternmatcher's parent semantics; directories on the way to an included path are created
 *    lazily with their source metadata.
 *
 * Where kiln differs on purpose, it refuses rather than guessing: several sources (files) into a
 * destination that is neither `/`-terminated nor an existing directory (BuildKit silently keeps the
 * last one), context symlinks that lead out of the context, `--chown` names that do not exist.
 *
 * Memory: the planned entries (one small record per copied node) are the only thing held for the
 * whole tree; file contents are never read here (the layer writer streams them), and directories
 * are listed one at a time with a bounded number of lstat calls in flight, so a copy of 20,000
 * small files costs 20,000 records, not 20,000 buffers.
 */
import { promises as fsp } from 'node:fs';
import { MatchInfo, PatternMatcher } from '../../context/ignore/patterns.js';
import type { SourceContent } from '../../dockerfile/instructions/types.js';
import type { TarEntrySpec } from '../../oci/layer/index.js';
import {
  DirFS,
  baseOf,
  cleanAbs,
  joinAbs,
  lookupUser,
  parentOf,
  type FSEntry,
  type ReadOnlyFS,
} from '../fsview/index.js';
import { archiveCompression, unpackArchive } from './archive.js';
import { applyChmod, createdDirMode, parseChmod, type ChmodSpec } from './chmod.js';
import { DestTree, type DirMeta, type Planned } from './dest.js';
import { CopyError, SourceNotFoundError } from './errors.js';
import { fetchGit } from './git.js';
import { download } from './http.js';
import { containsWildcards, goMatch, splitWildcards } from './match.js';
import { classifySource, urlFileName, type GitRef } from './sources.js';
import { TempSpace } from './temp.js';
import type { CopyOptions, CopyPlan, CopyRequest } from './types.js';

/** A source node: an entry of a tree, or a file that exists only for this step (heredoc, download). */
interface SrcNode extends FSEntry {
  /** Heredoc content (no host file behind it). */
  content?: Buffer;
  /** No time of its own: the entry gets the layer's synthetic time. */
  noTime?: boolean;
}

interface Match {
  /** Last component of the path as written or matched; names the node in a destination directory. */
  name: string;
  /** The node, with a top-level symlink followed. */
  entry: SrcNode;
}

type Item =
  | { kind: 'local'; written: string; fs: ReadOnlyFS; matches: Match[]; include: PatternMatcher | undefined }
  | { kind: 'http'; url: string }
  | { kind: 'git'; url: string; ref: GitRef }
  | { kind: 'content'; content: SourceContent };

/** The destination as BuildKit normalizes it: absolute, relative to WORKDIR, trailing `/` or `/.` kept. */
export function normalizeDest(dest: string, workdir = '/'): string {
  let p = dest;
  if (!p.startsWith('/') && (p === '.' || p === '')) p = './';
  const base = p.startsWith('/') ? '/' : cleanAbs(workdir || '/');
  let out = cleanAbs(`${base}/${p}`);
  if (p.endsWith('/') && !out.endsWith('/')) out += '/';
  else if (p.endsWith('/.')) out += out === '/' ? '.' : '/.';
  return out;
}

/**
 * Plans the layer of a COPY or ADD. The plan's entries reference host files (sources, downloads,
 * unpacked archives); call `dispose()` once they have been written.
 */
export async function planCopy(req: CopyRequest): Promise<CopyPlan> {
  const temp = new TempSpace(req.tempDir);
  try {
    const planner = new Planner(req, temp);
    const entries = await planner.run();
    return { entries, destination: planner.dest, dispose: () => temp.dispose() };
  } catch (err) {
    await temp.dispose();
    throw err;
  }
}

class Planner {
  readonly kind: 'COPY' | 'ADD';
  readonly opts: CopyOptions;
  readonly dest: string;
  readonly tree: DestTree;
  readonly chmod: ChmodSpec | undefined;
  readonly exclude: PatternMatcher | undefined;
  owner: { uid: number; gid: number } | undefined;
  createdMeta: DirMeta = { mode: 0o755, uid: 0, gid: 0 };

  constructor(
    readonly req: CopyRequest,
    readonly temp: TempSpace,
  ) {
    this.kind = req.instruction ?? 'COPY';
    this.opts = req.options ?? {};
    this.dest = normalizeDest(req.dest, req.workdir);
    this.tree = new DestTree(this.opts.link ? undefined : req.destination);
    this.chmod = this.opts.chmod ? parseChmod(this.opts.chmod) : undefined;
    this.exclude = this.opts.exclude && this.opts.exclude.length > 0 ? new PatternMatcher(this.opts.exclude) : undefined;
  }

  async run(): Promise<TarEntrySpec[]> {
    const classified = this.req.sources.map((s) => ({ src: s, ...classifySource(s) }));
    this.validate(classified);
    this.owner = await this.resolveOwner();
    this.createdMeta = { mode: createdDirMode(this.chmod), uid: this.owner?.uid ?? 0, gid: this.owner?.gid ?? 0 };

    const items: Item[] = [];
    for (const c of classified) {
      if (c.kind === 'git') items.push({ kind: 'git', url: c.src, ref: c.ref });
      else if (c.kind === 'http') items.push({ kind: 'http', url: c.src });
      else items.push(await this.collectLocal(c.src));
    }
    for (const content of this.req.contents ?? []) items.push({ kind: 'content', content });
    await this.checkSeveralSources(items);

    for (const item of items) {
      this.req.signal?.throwIfAborted();
      await this.apply(item);
    }
    return this.tree.finish();
  }

  // -- validation --------------------------------------------------------------------------------

  private validate(classified: Array<{ src: string } & ReturnType<typeof classifySource>>): void {
    const fail = (msg: string) => new CopyError('COPY_INVALID', msg);
    for (const c of classified) {
      if (this.kind === 'COPY' && c.kind === 'http') throw fail('source can\'t be a URL for COPY');
      if (this.kind === 'COPY' && c.kind === 'git') throw fail('source can\'t be a git ref for COPY');
    }
    const checksum = this.opts.checksum;
    if (checksum) {
      if (this.kind === 'COPY') throw fail('checksum can\'t be specified for COPY');
      if (classified.length !== 1) throw fail('checksum can\'t be specified for multiple sources');
      if (classified[0]!.kind === 'local') throw fail('checksum requires HTTP(S) or Git sources');
    }
    for (const c of classified) {
      if (c.kind !== 'git') continue;
      if (this.opts.keepGitDir !== undefined && c.ref.keepGitDir !== undefined && this.opts.keepGitDir !== c.ref.keepGitDir) {
        throw fail('inconsistent keep-git-dir configuration');
      }
      if (checksum && c.ref.checksum && checksum !== c.ref.checksum) throw fail(`checksum mismatch "${checksum}" != "${c.ref.checksum}"`);
    }
  }

  private async resolveOwner(): Promise<{ uid: number; gid: number } | undefined> {
    const chown = this.opts.chown;
    if (chown === undefined || chown === '') return undefined;
    if (typeof chown !== 'string') return { uid: chown.uid, gid: chown.gid };
    // Names are looked up in the destination's user database even with --link (BuildKit cannot
    // resolve them there at all; numeric ids keep a --link layer independent of its base).
    const user = await lookupUser(this.req.destination, chown, { purpose: 'chown' });
    return { uid: user.uid, gid: user.gid };
  }

  // -- phase 1: sources ---------------------------------------------------------------------------

  private sourceFS(written: string): ReadOnlyFS {
    if (!this.req.source) throw new CopyError('COPY_NO_SOURCE', `${this.kind} ${written}: there is no source tree to copy from`);
    return this.req.source;
  }

  private notFound(path: string, fs: ReadOnlyFS): SourceNotFoundError {
    const hint =
      fs instanceof DirFS
        ? 'the path must exist in the build context and not be excluded by .dockerignore'
        : `the path must exist in the ${fs.label}`;
    return new SourceNotFoundError(path, this.req.sourceRef ?? 'context', hint);
  }

  private async collectLocal(written: string): Promise<Item> {
    const fs = this.sourceFS(written);
    let base = written;
    let include: PatternMatcher | undefined;
    if (this.opts.parents) {
      const pivot = written.indexOf('/./');
      let pattern: string;
      if (pivot < 0) {
        pattern = written;
        base = '/';
      } else {
        base = written.slice(0, pivot);
        pattern = written.slice(pivot + 3);
      }
      pattern = cleanAbs(pattern).slice(1);
      if (pattern !== '') include = new PatternMatcher([pattern]);
      // Without wildcards the named path must exist (BuildKit's RequiredPaths).
      if (!containsWildcards(base) && !containsWildcards(pattern)) {
        const required = cleanAbs(`${base}/${pattern}`);
        const found = await fs.lstatPhysical(await fs.resolve(required, { followFinal: true }));
        if (!found) throw this.notFound(required, fs);
      }
    }
    const srcPath = cleanAbs(base);
    if (!containsWildcards(srcPath)) {
      const entry = await fs.lstatPhysical(await fs.resolve(srcPath, { followFinal: true }));
      if (!entry) throw this.notFound(srcPath, fs);
      return { kind: 'local', written, fs, include, matches: [{ name: baseOf(srcPath), entry }] };
    }
    const { dir, pattern } = splitWildcards(srcPath);
    const dirEntry = await fs.lstatPhysical(await fs.resolve(dir, { followFinal: true }));
    if (!dirEntry) throw new CopyError('COPY_SOURCE_NOT_FOUND', `lstat ${dir}: no such file or directory`);
    const paths = dirEntry.type === 'directory' ? await this.walkMatches(fs, dirEntry.path, pattern) : [];
    const matches: Match[] = [];
    for (const p of paths) {
      const entry = await fs.lstatPhysical(await fs.resolve(p, { followFinal: true }));
      if (!entry) throw new CopyError('COPY_SOURCE_NOT_FOUND', `lstat ${p}: no such file or directory`);
      matches.push({ name: baseOf(p), entry });
    }
    return { kind: 'local', written, fs, include, matches };
  }

  /**
   * The paths below `dir` whose relative path matches `pattern`, in walk order (fsutil walks the
   * whole tree; the walk here stops at depths and prefixes that cannot match, which gives the same
   * result). A matching directory is not entered; symlinks are not followed.
   */
  private async walkMatches(fs: ReadOnlyFS, dir: string, pattern: string): Promise<string[]> {
    // Each `/` of a path must be matched by a `/` of the pattern (`*` and `?` never match one).
    const maxDepth = pattern.split('/').length;
    const parts = pattern.includes('[') ? undefined : pattern.split('/');
    const out: string[] = [];
    const walk = async (d: string, rel: string, depth: number): Promise<void> => {
      for (const e of await fs.entries(d)) {
        const r = rel === '' ? e.name : `${rel}/${e.name}`;
        if (goMatch(pattern, r)) {
          out.push(e.path);
          continue;
        }
        if (e.type !== 'directory' || depth + 1 >= maxDepth) continue;
        if (parts && !goMatch(parts[depth]!, e.name)) continue;
        await walk(e.path, r, depth + 1);
      }
    };
    await walk(dir, '', 0);
    return out;
  }

  /** Several sources into one path that is not a directory: refused where BuildKit would keep only the last. */
  private async checkSeveralSources(items: Item[]): Promise<void> {
    let count = 0;
    const files: Array<Match | undefined> = [];
    for (const item of items) {
      if (item.kind === 'local') {
        count += item.matches.length;
        for (const m of item.matches) if (m.entry.type !== 'directory') files.push(m);
      } else {
        count++;
        if (item.kind !== 'git') files.push(undefined);
      }
    }
    if (count <= 1 || files.length === 0 || this.dest.endsWith('/') || this.dest.endsWith('/.')) return;
    const view = this.tree.view;
    if (view) {
      const existing = await view.lstatPhysical(await view.resolve(this.dest, { followFinal: true }));
      if (existing?.type === 'directory') return;
    }
    // ADD unpacks local archives into the destination as a directory: they merge like directories.
    if (this.kind === 'ADD' && (this.opts.unpack ?? true)) {
      let allArchives = true;
      for (const m of files) {
        if (!m || m.entry.type !== 'file' || (await archiveCompression(m.entry.hostPath, m.name)) === undefined) {
          allArchives = false;
          break;
        }
      }
      if (allArchives) return;
    }
    throw new CopyError(
      'COPY_MULTIPLE_SOURCES',
      `When using ${this.kind} with more than one source file, the destination must be a directory and end with a /`,
      { hint: `write the destination as "${this.dest}/"` },
    );
  }

  // -- phase 3: copying -----------------------------------------------------------------------------

  private async apply(item: Item): Promise<void> {
    switch (item.kind) {
      case 'local': {
        const unpack = this.kind === 'ADD' && (this.opts.unpack ?? true);
        for (const m of item.matches) {
          if (unpack && m.entry.type === 'file') {
            const compression = await archiveCompression(m.entry.hostPath, item.written);
            if (compression !== undefined) {
              await this.unpack(m.entry.hostPath, compression, item.written);
              continue;
            }
          }
          await this.copyOne(item.fs, m, true, item.include);
        }
        return;
      }
      case 'http': {
        const dl = this.req.downloaded?.get(item.url) ?? (await download(item.url, this.temp, { checksum: this.opts.checksum, signal: this.req.signal }));
        if (this.opts.unpack === true) {
          const compression = await archiveCompression(dl.path, item.url);
          if (compression !== undefined) {
            await this.unpack(dl.path, compression, item.url);
            return;
          }
        }
        const name = urlFileName(item.url);
        const st = await fsp.lstat(dl.path);
        const entry: SrcNode = {
          path: `/${name}`,
          name,
          type: 'file',
          mode: 0o600,
          uid: 0,
          gid: 0,
          size: dl.size,
          mtimeMs: dl.mtime * 1000,
          nlink: 1,
          dev: st.dev,
          ino: st.ino,
          rdev: 0,
          hostPath: dl.path,
        };
        await this.copyOne(undefined, { name, entry }, false, undefined);
        return;
      }
      case 'git': {
        const keepGitDir = this.opts.keepGitDir ?? item.ref.keepGitDir ?? false;
        const checkout = await fetchGit(item.ref, this.temp, {
          keepGitDir,
          checksum: this.opts.checksum || item.ref.checksum || this.req.gitCommits?.get(item.url) || undefined,
          command: this.req.gitCommand,
          label: item.url,
          signal: this.req.signal,
        });
        const fs = new DirFS(checkout.dir, { label: 'git repository', owner: 'root' });
        const root = (await fs.lstatPhysical('/'))!;
        await this.copyOne(fs, { name: '/', entry: root }, false, undefined);
        return;
      }
      case 'content': {
        const name = baseOf(cleanAbs(item.content.path)) || item.content.path;
        const data = Buffer.from(item.content.data, 'utf8');
        const entry: SrcNode = {
          path: `/${name}`,
          name,
          type: 'file',
          mode: 0o644,
          uid: 0,
          gid: 0,
          size: data.length,
          mtimeMs: 0,
          nlink: 1,
          dev: 0,
          ino: 0,
          rdev: 0,
          hostPath: '',
          content: data,
          noTime: true,
        };
        await this.copyOne(undefined, { name, entry }, false, undefined);
        return;
      }
    }
  }

  private async unpack(archive: string, compression: Parameters<typeof unpackArchive>[0]['compression'], label: string): Promise<void> {
    const dest = await this.tree.resolve(cleanAbs(this.dest), true);
    await unpackArchive({
      tree: this.tree,
      archive,
      compression,
      label,
      dest,
      owner: this.owner,
      temp: this.temp,
      signal: this.req.signal,
      onWarning: this.req.onWarning,
    });
  }

  /** One fsutil Copy: prepare the destination, then copy the node (a directory's contents when `contents`). */
  private async copyOne(fs: ReadOnlyFS | undefined, m: Match, contents: boolean, include: PatternMatcher | undefined): Promise<void> {
    const { tree } = this;
    const dest = this.dest;
    const ensure = dest.endsWith('/') || dest.endsWith('/.') ? cleanAbs(dest) : parentOf(cleanAbs(dest));
    if (ensure !== '/') await tree.mkdirAll(await tree.resolve(ensure, true), this.createdMeta);
    const dst = await tree.resolve(cleanAbs(dest), true);
    const destNode = await tree.lookup(dst);
    const srcIsDir = m.entry.type === 'directory';
    let destPath = dst;
    if ((!contents && srcIsDir && destNode) || (!srcIsDir && destNode?.type === 'directory')) {
      if (m.name !== '' && m.name !== '/') destPath = joinAbs(dst, m.name);
    }
    const target = contents && srcIsDir && !destNode ? destPath : parentOf(destPath);
    if (target !== '/') await tree.mkdirAll(target, this.createdMeta);
    const copier = new TreeCopier(this, fs, include);
    await copier.copy(m.entry, '', destPath, false, MatchInfo.none, MatchInfo.none);
  }

  /** The tar entry of a copied node (its source, with --chown and --chmod applied). */
  async copiedSpec(src: SrcNode): Promise<Planned['spec'] & { linkname?: string }> {
    const owner = this.owner ?? { uid: src.uid, gid: src.gid };
    const mtime = src.noTime ? undefined : Math.floor(src.mtimeMs / 1000);
    const mode = this.chmod ? applyChmod(this.chmod, src.mode, src.type === 'directory') : src.mode;
    if (src.content) return { type: 'file', content: src.content, mode, uid: owner.uid, gid: owner.gid, ...(mtime !== undefined ? { mtime } : {}) };
    if (src.type === 'symlink') {
      return { source: src.hostPath, uid: owner.uid, gid: owner.gid, ...(mtime !== undefined ? { mtime } : {}), linkname: await fsp.readlink(src.hostPath) };
    }
    return { source: src.hostPath, mode, uid: owner.uid, gid: owner.gid, ...(mtime !== undefined ? { mtime } : {}) };
  }
}

interface PendingDir {
  src: SrcNode;
  target: string;
  copied: boolean;
}

/** fsutil's copier for one source: a walk of the source tree that plans destination nodes. */
class TreeCopier {
  private readonly pending: PendingDir[] = [];

  constructor(
    private readonly p: Planner,
    private readonly fs: ReadOnlyFS | undefined,
    private readonly include: PatternMatcher | undefined,
  ) {}

  async copy(src: SrcNode, comps: string, target: string, overwrite: boolean, incInfo: MatchInfo, excInfo: MatchInfo): Promise<void> {
    const { tree } = this.p;
    const exclude = this.p.exclude;
    let included = true;
    let excluded = false;
    let incNext = MatchInfo.none;
    let excNext = MatchInfo.none;
    if (comps !== '') {
      if (this.include) {
        const r = this.include.matchesUsingParentResults(comps, incInfo);
        included = r.matched;
        incNext = r.info;
      }
      if (exclude) {
        const r = exclude.matchesUsingParentResults(comps, excInfo);
        excNext = r.info;
        if (r.matched) {
          included = false;
          excluded = true;
        }
      }
      // Nothing below an excluded path can come back without an include list or `!` exceptions.
      if (!included && !this.include && !exclude?.exclusions()) return;
    }
    const isDir = src.type === 'directory';
    if (!included && !isDir) return;
    if (src.type === 'socket') {
      this.p.req.onWarning?.({ code: 'socket-skipped', message: `${src.path}: sockets cannot be stored in a layer; skipped` });
      return;
    }

    const targetNode = await tree.lookup(target);
    if (included) await this.createPendingParents();
    if (!isDir && included && targetNode?.type === 'directory') {
      throw new CopyError('COPY_CONFLICT', `cannot replace to directory ${target} with file`);
    }

    if (!isDir) {
      const spec = await this.p.copiedSpec(src);
      const { linkname, ...rest } = spec;
      tree.put({ path: target, type: src.type, origin: 'copied', spec: rest, ...(linkname !== undefined ? { linkname } : {}) });
      return;
    }

    let created = false;
    if (included) {
      if (!targetNode) {
        tree.put({ path: target, type: 'directory', origin: 'copied', spec: await this.p.copiedSpec(src) });
        created = true;
      } else if (targetNode.type !== 'directory') {
        throw new CopyError('COPY_CONFLICT', `cannot copy to non-directory: ${target}`);
      }
    }
    this.pending.push({ src, target, copied: included });
    try {
      const skipChildren = excluded && !exclude?.exclusions();
      if (!skipChildren && this.fs) {
        this.p.req.signal?.throwIfAborted();
        for (const child of await this.fs.entries(src.path)) {
          await this.copy(child, comps === '' ? child.name : `${comps}/${child.name}`, joinAbs(target, child.name), true, incNext, excNext);
        }
      }
    } finally {
      this.pending.pop();
    }

    if (!included) return;
    if (overwrite) {
      // An existing sub-directory takes the source's metadata.
      if (!created && target !== '/') tree.put({ path: target, type: 'directory', origin: 'copied', spec: await this.p.copiedSpec(src) });
    } else if (!created && targetNode) {
      // The destination directory itself keeps its mode and owner; it takes the source's time.
      const dir = await tree.directoryForUpdate(target);
      if (dir && !src.noTime) dir.spec = { ...dir.spec, mtime: Math.floor(src.mtimeMs / 1000) };
    }
  }

  /** Directories skipped by the patterns, created once something inside them is copied. */
  private async createPendingParents(): Promise<void> {
    const { tree } = this.p;
    for (const d of this.pending) {
      if (d.copied) continue;
      const node = await tree.lookup(d.target);
      if (!node) {
        tree.put({ path: d.target, type: 'directory', origin: 'copied', spec: await this.p.copiedSpec(d.src) });
      } else if (node.type !== 'directory') {
        throw new CopyError('COPY_CONFLICT', `cannot copy to non-directory: ${d.target}`);
      } else {
        // fsutil chmods an existing directory to the source's own mode here, and leaves the rest.
        const dir = await tree.directoryForUpdate(d.target);
        if (dir) dir.spec = { ...dir.spec, mode: d.src.mode };
      }
      d.copied = true;
    }
  }
}
