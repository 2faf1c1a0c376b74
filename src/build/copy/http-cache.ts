/**
 * What kiln knows of the URLs ADD downloaded: for each, the response's validators (ETag,
 * Last-Modified) and what the content was. A rebuild asks the server whether the content changed
 * (a conditional GET); when it has not, the step is keyed from this record and, if cached, nothing
 * is downloaded, as BuildKit's http source does. Kept in the store under `cache/http/`.
 */
import { promises as fsp } from 'node:fs';
import { join } from 'node:path';
import { sha256 } from '../../oci/digest.js';
import { ownerTag } from '../../store/owner.js';

export interface HttpSourceRecord {
  url: string;
  etag?: string;
  lastModified?: string;
  /** sha256 of the content. */
  digest: string;
  /** The time ADD gives the file (Last-Modified, or 0). */
  mtime: number;
}

/** Records written by this process: two steps may write the same URL's at once. */
let written = 0;

export class HttpSourceCache {
  constructor(private readonly dir: string) {}

  private file(url: string): string {
    return join(this.dir, `${sha256(url).slice('sha256:'.length)}.json`);
  }

  async get(url: string): Promise<HttpSourceRecord | undefined> {
    try {
      const rec = JSON.parse(await fsp.readFile(this.file(url), 'utf8')) as HttpSourceRecord;
      return rec.url === url && typeof rec.digest === 'string' && typeof rec.mtime === 'number' ? rec : undefined;
    } catch {
      return undefined;
    }
  }

  /**
   * Replaces the record whole (never a half-written one: written aside, then renamed). A record that
   * cannot be written costs only a download next time, so that is no error.
   */
  async put(rec: HttpSourceRecord): Promise<void> {
    const tmp = `${this.file(rec.url)}.${ownerTag()}-${++written}.tmp`;
    try {
      await fsp.mkdir(this.dir, { recursive: true });
      await fsp.writeFile(tmp, JSON.stringify(rec));
      await fsp.rename(tmp, this.file(rec.url));
    } catch {
      await fsp.rm(tmp, { force: true }).catch(() => undefined);
    }
  }
}
