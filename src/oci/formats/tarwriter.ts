/**
 * Writing an archive tar entry by entry with tar-stream: fixed metadata (root-owned, mtime 0, 0644
 * files and 0755 directories) so the same images always give the same bytes, and bodies streamed
 * from their sources with the size declared up front.
 */
import { once } from 'node:events';
import type { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createPack, type Pack } from '../layer/tar.js';

export class ArchiveTarWriter {
  private readonly pack: Pack;
  private readonly done: Promise<void>;
  private failed: Error | undefined;

  constructor(out: Writable, opts: { end?: boolean } = {}) {
    this.pack = createPack();
    this.done = pump(this.pack as unknown as Readable, out, opts.end ?? true);
    // Observed here so a failure before `finish()` is awaited is never an unhandled rejection.
    this.done.catch((err: Error) => {
      this.failed ??= err;
    });
  }

  async directory(name: string): Promise<void> {
    await this.entry({ name: name.endsWith('/') ? name : `${name}/`, type: 'directory', mode: 0o755, size: 0 }, undefined);
  }

  async file(name: string, body: Buffer | string): Promise<void> {
    const data = typeof body === 'string' ? Buffer.from(body) : body;
    await this.entry({ name, type: 'file', mode: 0o644, size: data.length }, data);
  }

  /** A file whose `size` bytes come from `body` (which must yield exactly that many). */
  async stream(name: string, size: number, body: Readable): Promise<void> {
    await this.entry({ name, type: 'file', mode: 0o644, size }, body);
  }

  private async entry(h: { name: string; type: 'file' | 'directory'; mode: number; size: number }, body: Buffer | Readable | undefined): Promise<void> {
    if (this.failed) {
      if (body && !Buffer.isBuffer(body)) body.destroy();
      throw this.failed;
    }
    const header = { ...h, uid: 0, gid: 0, uname: '', gname: '', mtime: new Date(0) };
    let settle!: (err?: Error | null) => void;
    const finished = new Promise<void>((resolve, reject) => {
      settle = (err) => (err ? reject(err) : resolve());
    });
    if (body === undefined || Buffer.isBuffer(body)) {
      if (body) this.pack.entry(header, body, settle);
      else this.pack.entry(header, settle);
      await Promise.race([finished, this.done]);
      return;
    }
    const sink = this.pack.entry(header, settle);
    try {
      for await (const chunk of body) {
        if (!sink.write(chunk as Buffer)) await Promise.race([once(sink as unknown as NodeJS.EventEmitter, 'drain'), this.done]);
        if (this.failed) throw this.failed;
      }
      (sink as unknown as { end(): void }).end();
    } catch (err) {
      sink.destroy(err as Error);
      throw err;
    }
    await finished;
  }

  /** Ends the archive and waits until `out` has taken all of it. */
  async finish(): Promise<void> {
    if (this.failed) throw this.failed;
    this.pack.finalize();
    await this.done;
  }

  /** Abandons the archive (`out` is destroyed with `err` when this writer was to end it). */
  abort(err: Error): void {
    this.failed ??= err;
    this.pack.destroy(err);
  }
}

/**
 * Copies `source` into `out` with backpressure, ending `out` only when `end` is set. (Node's
 * `pipeline` option `end: false` is not honoured for tar-stream's streams, which are not Node
 * streams, and an archive written to a caller's stream must not close it when told not to.)
 */
export async function pump(source: Readable, out: Writable, end: boolean): Promise<void> {
  if (end) return pipeline(source, out);
  let failed: Error | undefined;
  const onError = (err: Error) => {
    failed ??= err;
  };
  out.on('error', onError);
  try {
    for await (const chunk of source) {
      if (failed) throw failed;
      if (out.write(chunk as Buffer)) continue;
      await new Promise<void>((resolve, reject) => {
        const cleanup = () => {
          out.off('drain', onDrain);
          out.off('error', onFail);
          out.off('close', onClose);
        };
        const onDrain = () => {
          cleanup();
          resolve();
        };
        const onFail = (err: Error) => {
          cleanup();
          reject(err);
        };
        const onClose = () => {
          cleanup();
          reject(failed ?? new Error('the output stream closed before the archive was complete'));
        };
        out.on('drain', onDrain);
        out.on('error', onFail);
        out.on('close', onClose);
      });
    }
    if (failed) throw failed;
  } finally {
    out.off('error', onError);
  }
}
