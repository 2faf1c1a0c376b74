/**
 * The part of a read-only view that follows from finding entries: once a view can look up a literal
 * path and resolve symlinks inside itself, lstat, readlink and opening files work the same way
 * whether the host files behind it are a plain directory or a stack of layers.
 */
import { promises as fsp, type Stats } from 'node:fs';
import { FSViewError } from './errors.js';
import { baseOf, cleanAbs, joinAbs, parentOf } from './paths.js';
import type { FSEntry, ReadOnlyFS, ResolveOptions } from './types.js';

export abstract class HostTree implements ReadOnlyFS {
  abstract readonly label: string;
  abstract lstatPhysical(path: string): Promise<FSEntry | undefined>;
  abstract readdir(path: string): Promise<string[]>;
  abstract entries(path: string): Promise<FSEntry[]>;
  abstract resolve(path: string, options?: ResolveOptions): Promise<string>;

  async lstat(path: string): Promise<FSEntry | undefined> {
    const clean = cleanAbs(path);
    if (clean === '/') return this.lstatPhysical('/');
    const parent = await this.resolve(parentOf(clean), { followFinal: true });
    return this.lstatPhysical(joinAbs(parent, baseOf(clean)));
  }

  async readlink(path: string): Promise<string> {
    const entry = await this.lstat(path);
    if (!entry) throw new FSViewError('ENOENT', cleanAbs(path), 'no such file or directory');
    if (entry.type !== 'symlink') throw new FSViewError('EINVAL', entry.path, 'not a symbolic link');
    return fsp.readlink(entry.hostPath);
  }

  async readFile(path: string, options: { maxBytes?: number } = {}): Promise<Buffer> {
    const fh = await this.open(path);
    try {
      const st = await fh.stat();
      if (options.maxBytes !== undefined && st.size > options.maxBytes) {
        throw new FSViewError('EFBIG', cleanAbs(path), `larger than ${options.maxBytes} bytes`);
      }
      return await fh.readFile();
    } finally {
      await fh.close();
    }
  }

  async open(path: string): Promise<fsp.FileHandle> {
    const resolved = await this.resolve(path, { followFinal: true });
    const entry = await this.lstatPhysical(resolved);
    if (!entry) throw new FSViewError('ENOENT', cleanAbs(path), 'no such file or directory');
    if (entry.type === 'directory') throw new FSViewError('EISDIR', cleanAbs(path), 'is a directory');
    if (entry.type !== 'file') throw new FSViewError('EINVAL', cleanAbs(path), 'not a regular file');
    // O_NOFOLLOW: the entry was resolved inside the view; the host must not follow anything further.
    return fsp.open(entry.hostPath, fsp.constants.O_RDONLY | fsp.constants.O_NOFOLLOW);
  }
}

/** lstat of a host path; undefined when nothing is there, an EIO view error when it cannot be read. */
export async function lstatOrUndefined(path: string): Promise<Stats | undefined> {
  try {
    return await fsp.lstat(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
    throw new FSViewError('EIO', path, `cannot stat (${(err as Error).message})`, { cause: err });
  }
}
