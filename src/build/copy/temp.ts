/** A private temporary directory for one COPY/ADD, created on first use and removed by dispose(). */
import { promises as fsp } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export class TempSpace {
  private dir: Promise<string> | undefined;
  private counter = 0;

  constructor(private readonly base: string = tmpdir()) {}

  /** The directory itself. */
  root(): Promise<string> {
    this.dir ??= (async () => {
      await fsp.mkdir(this.base, { recursive: true });
      return fsp.mkdtemp(join(this.base, 'kiln-copy-'));
    })();
    return this.dir;
  }

  /** A fresh path inside it (nothing is created). Names never derive from untrusted input. */
  async path(kind: string): Promise<string> {
    return join(await this.root(), `${kind}-${++this.counter}`);
  }

  async dispose(): Promise<void> {
    const dir = this.dir;
    this.dir = undefined;
    if (!dir) return;
    const path = await dir.catch(() => undefined);
    if (!path) return;
    // A kept .git directory can hold read-only files; rm -rf copes with those as the owner.
    await fsp.rm(path, { recursive: true, force: true, maxRetries: 2 });
  }
}
