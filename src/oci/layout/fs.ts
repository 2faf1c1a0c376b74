/**
 * Filesystem primitives for content that must never be seen half written: temp files next to their
 * destination, fsync of data and directory, and publication by rename or link.
 */
import { randomBytes } from 'node:crypto';
import { constants, promises as fsp } from 'node:fs';
import { dirname } from 'node:path';

/** A unique temp name: `<prefix>-<random>`; the prefix lets a cleaner tell whose temp file it is. */
export function tempName(prefix: string, suffix = ''): string {
  return `${prefix}-${randomBytes(8).toString('hex')}${suffix}`;
}

/** Makes a rename or link in `dir` durable. Some filesystems refuse fsync on directories; that is not an error. */
export async function fsyncDir(dir: string): Promise<void> {
  let fh: fsp.FileHandle | undefined;
  try {
    fh = await fsp.open(dir, constants.O_RDONLY | constants.O_DIRECTORY);
    await fh.sync();
  } catch (err) {
    if (!isErrno(err, 'EINVAL', 'ENOTSUP', 'EPERM', 'EACCES', 'EISDIR')) throw err;
  } finally {
    await fh?.close();
  }
}

/**
 * Writes `data` to `path` so that a reader sees either the old file or the complete new one:
 * temp file in `tmpDir` (same filesystem), fsync, rename, fsync of the directory.
 */
export async function writeFileAtomic(
  path: string,
  data: string | Uint8Array,
  opts: { tmpDir: string; tempPrefix: string; mode?: number },
): Promise<void> {
  await fsp.mkdir(opts.tmpDir, { recursive: true });
  const tmp = `${opts.tmpDir}/${tempName(opts.tempPrefix, '.tmp')}`;
  try {
    const fh = await fsp.open(tmp, 'wx', opts.mode ?? 0o644);
    try {
      await fh.writeFile(data);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await fsp.rename(tmp, path);
  } catch (err) {
    await fsp.rm(tmp, { force: true });
    throw err;
  }
  await fsyncDir(dirname(path));
}

/**
 * Publishes a complete temp file at `path` unless something is already there. A hard link cannot
 * replace an existing file, so concurrent writers of the same content never rewrite each other;
 * where hard links are unsupported, rename (atomic, same content) is the fallback.
 * Returns whether this call created `path`. The temp file is gone afterwards either way.
 */
export async function publishNoReplace(tmp: string, path: string): Promise<boolean> {
  let created: boolean;
  try {
    await fsp.link(tmp, path);
    created = true;
  } catch (err) {
    if (isErrno(err, 'EEXIST')) {
      created = false;
    } else if (isErrno(err, 'EPERM', 'ENOTSUP', 'EOPNOTSUPP', 'EMLINK', 'EXDEV')) {
      await fsp.rename(tmp, path);
      await fsyncDir(dirname(path));
      return true;
    } else {
      throw err;
    }
  }
  await fsp.rm(tmp, { force: true });
  if (created) await fsyncDir(dirname(path));
  return created;
}

export function isErrno(err: unknown, ...codes: string[]): err is NodeJS.ErrnoException {
  return typeof err === 'object' && err !== null && codes.includes((err as NodeJS.ErrnoException).code ?? '');
}

/** The names in `dir`; none when `dir` does not exist (a store directory made on first use). */
export async function namesIn(dir: string): Promise<string[]> {
  try {
    return await fsp.readdir(dir);
  } catch (err) {
    if (isErrno(err, 'ENOENT')) return [];
    throw err;
  }
}

/** The names in `dir` that are sha256 hex (content named by digest); none when `dir` does not exist. */
export async function hexNamesIn(dir: string): Promise<string[]> {
  return (await namesIn(dir)).filter((n) => /^[a-f0-9]{64}$/.test(n));
}

/** `stat` that answers undefined for a missing path. */
export async function statOrUndefined(path: string): Promise<import('node:fs').Stats | undefined> {
  try {
    return await fsp.stat(path);
  } catch (err) {
    if (isErrno(err, 'ENOENT', 'ENOTDIR')) return undefined;
    throw err;
  }
}
