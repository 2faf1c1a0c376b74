/**
 * diffID → compressed blob, per compression. The store keeps layers uncompressed and compresses
 * only when an image leaves it (push, OCI or docker archive); recording the result means each layer
 * is compressed once per compression, however often it is exported.
 *
 *   compressed/<diffID hex>/<gzip|zstd>.json   { diffID, compression, digest, size, mediaType }
 *
 * One small file per pair, replaced atomically: writers need no lock, and if two processes compress
 * the same layer at once the last record wins while both blobs stay valid.
 */
import { promises as fsp } from 'node:fs';
import { join } from 'node:path';
import { digestHex, isDigest, type Digest } from '../oci/digest.js';
import { hexNamesIn, isErrno, writeFileAtomic } from '../oci/layout/fs.js';
import { ownerTag } from './owner.js';

export type LayerCompression = 'gzip' | 'zstd';

export interface CompressedRecord {
  diffID: Digest;
  compression: LayerCompression;
  digest: Digest;
  size: number;
  mediaType: string;
  /** Length of the uncompressed tar, once counted (a multi-member gzip's trailer does not tell it). */
  uncompressedSize?: number;
}

export class CompressedMappings {
  readonly dir: string;

  constructor(
    root: string,
    private readonly tmpDir: string,
  ) {
    this.dir = join(root, 'compressed');
  }

  private path(diffID: Digest, compression: LayerCompression): string {
    return join(this.dir, digestHex(diffID), `${compression}.json`);
  }

  async get(diffID: Digest, compression: LayerCompression): Promise<CompressedRecord | undefined> {
    try {
      const rec = JSON.parse(await fsp.readFile(this.path(diffID, compression), 'utf8')) as CompressedRecord;
      return isDigest(rec.digest) && typeof rec.size === 'number' ? rec : undefined;
    } catch (err) {
      if (isErrno(err, 'ENOENT') || err instanceof SyntaxError) return undefined;
      throw err;
    }
  }

  /** Every compressed variant recorded for a layer. */
  async all(diffID: Digest): Promise<CompressedRecord[]> {
    const out: CompressedRecord[] = [];
    for (const c of ['gzip', 'zstd'] as const) {
      const rec = await this.get(diffID, c);
      if (rec) out.push(rec);
    }
    return out;
  }

  async set(rec: CompressedRecord): Promise<void> {
    const path = this.path(rec.diffID, rec.compression);
    await fsp.mkdir(join(this.dir, digestHex(rec.diffID)), { recursive: true });
    await writeFileAtomic(path, JSON.stringify(rec), { tmpDir: this.tmpDir, tempPrefix: ownerTag() });
  }

  async remove(diffID: Digest, compression: LayerCompression): Promise<void> {
    await fsp.rm(this.path(diffID, compression), { force: true });
  }

  /** diffIDs (hex) that have a mapping directory. */
  list(): Promise<string[]> {
    return hexNamesIn(this.dir);
  }

  async removeAll(hex: string): Promise<void> {
    await fsp.rm(join(this.dir, hex), { recursive: true, force: true });
  }
}
