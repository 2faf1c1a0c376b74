/**
 * The build context as a COPY source: a DirFS that lists directories synchronously when no ignore
 * rules apply. A copy of a big context lists every directory of it; the general listing stats each
 * entry through a promise (a thread-pool round trip per file), which costs more than the stat.
 */
import { lstatSync, readdirSync, type Stats } from 'node:fs';
import { join } from 'node:path';
import { compareNames } from '../../context/ignore/gopath.js';
import { DirFS, FSViewError, cleanAbs, components, entryFromStats, joinAbs, type FSEntry } from '../fsview/index.js';

export class ContextFS extends DirFS {
  private readonly plain: boolean;

  constructor(root: string, excludePatterns: readonly string[]) {
    super(root, { ignore: { excludePatterns: [...excludePatterns] } });
    this.plain = excludePatterns.length === 0;
  }

  override async entries(path: string): Promise<FSEntry[]> {
    if (!this.plain) return super.entries(path);
    // As DirFS.entries without a filter: the directory resolved inside the tree, its names in
    // byte order, entries that vanished meanwhile left out, everything owned by 0:0.
    const dir = await this.resolve(path, { followFinal: true });
    const entry = await this.lstatPhysical(dir);
    if (!entry) throw new FSViewError('ENOENT', cleanAbs(path), 'no such file or directory');
    if (entry.type !== 'directory') throw new FSViewError('ENOTDIR', cleanAbs(path), 'not a directory');
    const host = dir === '/' ? this.root : join(this.root, ...components(dir));
    let names: string[];
    try {
      names = readdirSync(host);
    } catch (err) {
      throw new FSViewError('EIO', dir, `cannot list (${(err as Error).message})`, { cause: err });
    }
    names.sort(compareNames);
    const out: FSEntry[] = [];
    for (const name of names) {
      const childHost = join(host, name);
      let st: Stats | undefined;
      try {
        st = lstatSync(childHost, { throwIfNoEntry: false });
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code !== 'ENOTDIR') throw new FSViewError('EIO', childHost, `cannot stat (${(err as Error).message})`, { cause: err });
      }
      if (st) out.push(entryFromStats(joinAbs(dir, name), name, st, childHost, { uid: 0, gid: 0 }));
    }
    return out;
  }
}
