/**
 * ADD of a git repository with the `git` program: the ref is fetched (shallow when the transport
 * allows it) into the step's temp directory and checked out detached, `--checksum` is compared with
 * the commit (a prefix is enough, as BuildKit allows), submodules are updated when the repository
 * has them, and `.git` is removed unless `--keep-git-dir`.
 *
 * For reproducible layers the checkout is normalized: directories 0755, files 0644 or 0755 (git
 * records only the executable bit), and every time set to the commit's time (BuildKit's `mtime=commit`
 * mode; its default is the checkout time, which would make each build's layer differ).
 */
import { spawn } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import { join } from 'node:path';
import { CopyError, MissingToolError } from './errors.js';
import type { GitRef } from './sources.js';
import type { TempSpace } from './temp.js';

export interface GitCheckout {
  /** Host directory of the checkout (the sub-directory when the ref names one). */
  dir: string;
  commit: string;
  /** Commit time, seconds since the epoch. */
  time: number;
}

export interface GitFetchOptions {
  keepGitDir: boolean;
  checksum?: string;
  command?: string;
  /** How the source is named in messages (the URL as written). */
  label: string;
  signal?: AbortSignal;
}

export async function fetchGit(ref: GitRef, temp: TempSpace, o: GitFetchOptions): Promise<GitCheckout> {
  if (o.checksum && !/^[a-fA-F0-9]+$/.test(o.checksum)) {
    throw new CopyError('ADD_BAD_CHECKSUM', `invalid checksum ${o.checksum} for Git URL, expected hex commit hash`);
  }
  const git = (args: string[], cwd?: string) => run(o.command ?? 'git', args, cwd, o);
  const dir = await temp.path('git');
  await git(['init', '-q', dir]);
  const want = ref.ref || 'HEAD';
  const fetched = await tryFetch(git, dir, ref.remote, want);
  if (!fetched) {
    throw new CopyError('ADD_GIT', `${o.label}: cannot fetch "${want}" from ${ref.remote}`, {
      hint: 'check the repository URL and that the branch, tag or commit exists',
    });
  }
  await git(['-c', 'advice.detachedHead=false', 'checkout', '-q', '--detach', fetched], dir);
  const commit = (await git(['rev-parse', 'HEAD'], dir)).trim();
  if (o.checksum && !commit.startsWith(o.checksum.toLowerCase())) {
    throw new CopyError('ADD_CHECKSUM_MISMATCH', `expected checksum to match ${o.checksum}, got ${commit}`, {
      hint: 'the ref moved or the --checksum value is wrong',
    });
  }
  const time = Number((await git(['log', '-1', '--format=%ct', 'HEAD'], dir)).trim()) || 0;
  if (ref.submodules !== false && (await exists(join(dir, '.gitmodules')))) {
    await git(['submodule', 'update', '--init', '--recursive', '--depth', '1'], dir);
  }
  if (!o.keepGitDir) await fsp.rm(join(dir, '.git'), { recursive: true, force: true });
  await normalize(dir, time);
  let root = dir;
  if (ref.subDir) {
    root = join(dir, ...ref.subDir.split('/'));
    const st = await fsp.lstat(root).catch(() => undefined);
    if (!st?.isDirectory()) throw new CopyError('ADD_GIT', `${o.label}: subdirectory "${ref.subDir}" not found in the repository`);
  }
  return { dir: root, commit, time };
}

/**
 * The commit `ref` names on its remote, asked with `git ls-remote` (no objects are fetched), so that
 * a rebuild can key the step before cloning, as BuildKit does; a full commit id names itself.
 * Undefined when the remote cannot say (an abbreviated id, an unreachable remote, no git): the step
 * is then cloned first and keyed by what it made.
 */
export async function resolveGitCommit(ref: GitRef, o: Omit<GitFetchOptions, 'keepGitDir'>): Promise<string | undefined> {
  const want = ref.ref || 'HEAD';
  if (/^[a-fA-F0-9]{40}$|^[a-fA-F0-9]{64}$/.test(want)) return want.toLowerCase();
  let listing: string;
  try {
    listing = await run(o.command ?? 'git', ['ls-remote', ref.remote, want], undefined, { ...o, keepGitDir: false });
  } catch {
    return undefined;
  }
  const refs = new Map<string, string>();
  for (const line of listing.split('\n')) {
    const [commit, name] = line.split('\t');
    if (commit && name) refs.set(name, commit);
  }
  // What `git fetch REMOTE WANT` would take: the ref itself, a branch, else a tag (peeled to its commit).
  for (const name of [want, `refs/heads/${want}`, `refs/tags/${want}^{}`, `refs/tags/${want}`]) {
    const commit = refs.get(name);
    if (commit) return commit;
  }
  return undefined;
}

/** Fetches `want` and returns what to check out, trying a shallow fetch first; undefined when the ref is unknown. */
async function tryFetch(git: (args: string[], cwd?: string) => Promise<string>, dir: string, remote: string, want: string): Promise<string | undefined> {
  const attempts: string[][] = [
    ['fetch', '-q', '--no-tags', '--depth=1', remote, want],
    // Dumb http and some servers cannot do shallow fetches.
    ['fetch', '-q', '--no-tags', remote, want],
  ];
  for (const args of attempts) {
    try {
      await git(args, dir);
      return 'FETCH_HEAD';
    } catch (err) {
      if (err instanceof MissingToolError) throw err;
    }
  }
  // A commit id is not a ref name a server hands out: fetch everything and look for it.
  if (/^[a-fA-F0-9]{4,64}$/.test(want)) {
    try {
      await git(['fetch', '-q', remote, '+refs/heads/*:refs/remotes/src/*', '+refs/tags/*:refs/tags/*'], dir);
      return (await git(['rev-parse', '--verify', '-q', `${want}^{commit}`], dir)).trim();
    } catch (err) {
      if (err instanceof MissingToolError) throw err;
    }
  }
  return undefined;
}

/** Directories 0755, files 0644/0755, all times the commit time. */
async function normalize(dir: string, time: number): Promise<void> {
  const walk = async (d: string): Promise<void> => {
    for (const ent of await fsp.readdir(d, { withFileTypes: true })) {
      const p = join(d, ent.name);
      if (ent.isDirectory()) {
        await walk(p);
        await fsp.chmod(p, 0o755);
      } else if (ent.isFile()) {
        const st = await fsp.lstat(p);
        await fsp.chmod(p, st.mode & 0o111 ? 0o755 : 0o644);
      }
      await fsp.lutimes(p, time, time);
    }
  };
  await walk(dir);
  await fsp.chmod(dir, 0o755);
  await fsp.utimes(dir, time, time);
}

async function exists(p: string): Promise<boolean> {
  return fsp.lstat(p).then(
    () => true,
    () => false,
  );
}

function run(command: string, args: string[], cwd: string | undefined, o: GitFetchOptions): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, {
      cwd,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, GIT_TERMINAL_PROMPT: '0', LC_ALL: 'C' },
      signal: o.signal,
    });
    let out = '';
    let err = '';
    child.stdout.setEncoding('utf8').on('data', (s: string) => (out += s));
    child.stderr.setEncoding('utf8').on('data', (s: string) => {
      if (err.length < 4096) err += s;
    });
    child.on('error', (e: NodeJS.ErrnoException) => {
      reject(e.code === 'ENOENT' ? new MissingToolError(command, 'git', `ADD ${o.label}`) : e);
    });
    child.on('close', (code) => {
      if (code === 0) resolve(out);
      else {
        const line = err.trim().split('\n').pop() ?? '';
        reject(new CopyError('ADD_GIT', `${o.label}: git ${args[0]} failed: ${line || `exit status ${code}`}`));
      }
    });
  });
}
