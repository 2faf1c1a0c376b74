/**
 * The build cache's records in the store: one small JSON file per cached step, keyed by the step's
 * cache-key digest, under `cache/records/`. The store does not interpret a record beyond its
 * `pins`: the digests (layer blobs, diffIDs) it keeps alive, which garbage collection treats as
 * roots, the way containerd's leases keep content. Records are written atomically (temp file,
 * rename) so a reader or a collector never sees half of one.
 */
import { promises as fsp } from 'node:fs';
import { join } from 'node:path';
import { isDigest, type Digest } from '../oci/digest.js';
import { isErrno, namesIn } from '../oci/layout/fs.js';

export interface BuildCacheRecord {
  /** Digests this record keeps alive. */
  pins: Digest[];
  /** When the record was written (ISO time). */
  lastUsed: string;
  [field: string]: unknown;
}

export class BuildCacheRecords {
  readonly dir: string;

  constructor(
    cacheDir: string,
    private readonly tmpDir: string,
  ) {
    this.dir = join(cacheDir, 'records');
  }

  private path(key: Digest): string {
    return join(this.dir, `${key.slice('sha256:'.length)}.json`);
  }

  async get<T extends BuildCacheRecord>(key: Digest): Promise<T | undefined> {
    try {
      const value = JSON.parse(await fsp.readFile(this.path(key), 'utf8')) as T;
      return Array.isArray(value.pins) ? value : undefined;
    } catch (err) {
      // A missing record is a miss; so is a damaged one (it is rewritten by the next build).
      if (isErrno(err, 'ENOENT') || err instanceof SyntaxError) return undefined;
      throw err;
    }
  }

  async put(key: Digest, record: BuildCacheRecord): Promise<void> {
    await fsp.mkdir(this.dir, { recursive: true });
    await fsp.mkdir(this.tmpDir, { recursive: true });
    const tmp = join(this.tmpDir, `${process.pid}-${Date.now()}-${Math.random().toString(36).slice(2)}.record`);
    await fsp.writeFile(tmp, JSON.stringify(record));
    await fsp.rename(tmp, this.path(key));
  }

  async keys(): Promise<Digest[]> {
    return (await namesIn(this.dir))
      .filter((n) => n.endsWith('.json'))
      .map((n) => `sha256:${n.slice(0, -5)}`)
      .filter(isDigest);
  }

  /** Every digest some record pins: roots for garbage collection. */
  async pinned(): Promise<Digest[]> {
    const out: Digest[] = [];
    for (const key of await this.keys()) {
      const rec = await this.get(key);
      if (rec) for (const d of rec.pins) if (isDigest(d)) out.push(d);
    }
    return out;
  }

  async remove(key: Digest): Promise<void> {
    await fsp.rm(this.path(key), { force: true });
  }

  /** Drops every record; returns how many. */
  async clear(): Promise<number> {
    const keys = await this.keys();
    for (const key of keys) await this.remove(key);
    return keys.length;
  }
}
