/**
 * Telling COPY/ADD sources apart as BuildKit's Dockerfile frontend does: a git reference
 * (`https://host/repo.git#ref:subdir`, `git@host:repo.git`, `ssh://`, `git://`), an http(s) URL, or
 * a path in the source tree. Git references follow dfgitutil.ParseGitRef: an http(s) URL is a git
 * repository only when its path ends in `.git`; the fragment is `ref:subdir`; query parameters
 * (`ref`, `tag`, `branch`, `subdir`, `checksum`/`commit`, `keep-git-dir`, `submodules`) refine it.
 */
import { CopyError } from './errors.js';

export interface GitRef {
  /** What git fetches from: the URL without fragment and query. */
  remote: string;
  /** Branch, tag, commit or full ref name; '' for the remote's HEAD. */
  ref: string;
  /** Directory inside the repository to copy ('' for all). */
  subDir: string;
  checksum: string;
  keepGitDir: boolean | undefined;
  submodules: boolean | undefined;
  /** http:// and git:// transports. */
  unencrypted: boolean;
}

export type SourceKind = { kind: 'git'; ref: GitRef } | { kind: 'http'; url: string } | { kind: 'local'; path: string };

const PROTO = /^([a-zA-Z0-9]+):\/\//;
const SUPPORTED = new Set(['http', 'https', 'ssh', 'git']);
const SCP = /^([a-zA-Z0-9_-]+)@([a-zA-Z0-9.-]+):(.*?)(?:\?(.*?))?(?:#(.*))?$/;

/** @throws CopyError for a git reference with conflicting or unknown options. */
export function classifySource(src: string): SourceKind {
  const git = parseGitRef(src);
  if (git) return { kind: 'git', ref: git };
  if (src.startsWith('http://') || src.startsWith('https://')) return { kind: 'http', url: src };
  return { kind: 'local', path: src };
}

/** The git reference `src` names, or undefined when it is not one. */
export function parseGitRef(src: string): GitRef | undefined {
  if (src.startsWith('./') || src.startsWith('../') || src.startsWith('github.com/')) return undefined;
  const proto = PROTO.exec(src);
  let remote: string;
  let fragment: string;
  let query: URLSearchParams;
  let unencrypted = false;
  if (proto) {
    const scheme = proto[1]!.toLowerCase();
    if (!SUPPORTED.has(scheme)) return undefined;
    let url: URL;
    try {
      url = new URL(src);
    } catch {
      return undefined;
    }
    if ((scheme === 'http' || scheme === 'https') && !decodePath(url.pathname).endsWith('.git')) return undefined;
    unencrypted = scheme === 'http' || scheme === 'git';
    fragment = decodeFragment(url.hash.slice(1));
    query = url.searchParams;
    const bare = new URL(url.href);
    bare.hash = '';
    bare.search = '';
    remote = bare.href;
  } else {
    const m = SCP.exec(src);
    if (!m) return undefined;
    remote = `${m[1]}@${m[2]}:${m[3]}`;
    query = new URLSearchParams(m[4] ?? '');
    fragment = m[5] ?? '';
  }
  const ref: GitRef = { remote, ref: '', subDir: '', checksum: '', keepGitDir: undefined, submodules: undefined, unencrypted };
  if (fragment !== '') {
    const colon = fragment.indexOf(':');
    ref.ref = colon < 0 ? fragment : fragment.slice(0, colon);
    ref.subDir = cleanSubDir(colon < 0 ? '' : fragment.slice(colon + 1));
  }
  loadQuery(ref, query, src);
  return ref;
}

function cleanSubDir(s: string): string {
  const parts: string[] = [];
  for (const p of s.split('/')) {
    if (p === '' || p === '.') continue;
    if (p === '..') parts.pop();
    else parts.push(p);
  }
  return parts.join('/');
}

function loadQuery(ref: GitRef, query: URLSearchParams, src: string): void {
  const fail = (msg: string) => new CopyError('INVALID_GIT_URL', `${src}: ${msg}`);
  const keys = new Set(query.keys());
  let tag = '';
  let branch = '';
  const bool = (key: string, v: string | undefined): boolean => {
    if (v === undefined || v === '') return true;
    if (/^(1|t|T|TRUE|true|True)$/.test(v)) return true;
    if (/^(0|f|F|FALSE|false|False)$/.test(v)) return false;
    throw fail(`invalid ${key} value: "${v}"`);
  };
  for (const key of keys) {
    const values = query.getAll(key);
    if (values.length > 1) throw fail(`query "${key}" has multiple values`);
    const v = values[0] ?? '';
    if (v === '' && !['submodules', 'keep-git-dir', 'fetch-by-commit'].includes(key)) throw fail(`query "${key}" has no value`);
    switch (key) {
      case 'ref':
        if (ref.ref !== '' && ref.ref !== v) throw fail(`ref conflicts: "${ref.ref}" vs "${v}"`);
        ref.ref = v;
        break;
      case 'tag':
        tag = v;
        break;
      case 'branch':
        branch = v;
        break;
      case 'subdir': {
        const sub = cleanSubDir(v);
        if (ref.subDir !== '' && ref.subDir !== sub) throw fail(`subdir conflicts: "${ref.subDir}" vs "${v}"`);
        ref.subDir = sub;
        break;
      }
      case 'checksum':
      case 'commit':
        ref.checksum = v;
        break;
      case 'keep-git-dir':
        ref.keepGitDir = bool(key, v);
        break;
      case 'submodules':
        ref.submodules = bool(key, v);
        break;
      case 'mtime':
        if (v !== 'checkout' && v !== 'commit') throw fail(`invalid mtime value: "${v}" (must be "checkout" or "commit")`);
        break;
      case 'fetch-by-commit':
        bool(key, v);
        break;
      default:
        throw fail(`unexpected query "${key}"`);
    }
  }
  if (tag !== '') {
    const full = tag.startsWith('refs/tags/') ? tag : `refs/tags/${tag}`;
    if (ref.ref !== '' && ref.ref !== full) throw fail(`ref conflicts: "${ref.ref}" vs "${full}"`);
    ref.ref = full;
  }
  if (branch !== '') {
    if (tag !== '') throw fail('branch conflicts with tag');
    const full = branch.startsWith('refs/heads/') ? branch : `refs/heads/${branch}`;
    if (ref.ref !== '' && ref.ref !== full) throw fail(`ref conflicts: "${ref.ref}" vs "${full}"`);
    ref.ref = full;
  }
}

function decodePath(p: string): string {
  try {
    return decodeURIComponent(p);
  } catch {
    return p;
  }
}

function decodeFragment(f: string): string {
  try {
    return decodeURIComponent(f);
  } catch {
    return f;
  }
}

/**
 * The file name an ADD of a URL gets: the last component of the URL's (decoded) path, or
 * `__unnamed__` when there is none. The Dockerfile frontend passes it to the download explicitly,
 * so a Content-Disposition header does not change it.
 */
export function urlFileName(url: string): string {
  let path: string;
  try {
    path = decodePath(new URL(url).pathname);
  } catch {
    return '__unnamed__';
  }
  const parts = path.split('/').filter((p) => p !== '');
  const base = parts[parts.length - 1];
  return base === undefined || base === '.' || base === '..' ? '__unnamed__' : base;
}
