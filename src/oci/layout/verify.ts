/** Streams that check content against its digest and size as it flows, so nothing is read twice. */
import { createHash, type Hash } from 'node:crypto';
import { Transform, type Readable, type TransformCallback } from 'node:stream';
import type { Digest } from '../digest.js';
import { BlobVerificationError } from './errors.js';

/**
 * Passes bytes through and fails the stream when they do not hash to `digest` or exceed / fall short
 * of `size`. An oversize blob fails as soon as the extra byte arrives; a digest mismatch can only be
 * known at the end, so consumers must treat the stream's error as "discard what you read".
 */
export class VerifyingStream extends Transform {
  private readonly hash: Hash = createHash('sha256');
  private count = 0;

  constructor(
    readonly digest: Digest,
    readonly size: number | undefined,
    readonly where: string,
  ) {
    super();
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    this.count += chunk.length;
    if (this.size !== undefined && this.count > this.size) {
      done(new BlobVerificationError(this.digest, this.where, { expectedSize: this.size, actualSize: this.count }));
      return;
    }
    this.hash.update(chunk);
    done(null, chunk);
  }

  override _flush(done: TransformCallback): void {
    const actual: Digest = `sha256:${this.hash.digest('hex')}`;
    if (actual !== this.digest || (this.size !== undefined && this.count !== this.size)) {
      done(new BlobVerificationError(this.digest, this.where, { actualDigest: actual, expectedSize: this.size, actualSize: this.count }));
      return;
    }
    done();
  }
}

/**
 * Pipes `first` through `rest` and returns the last stream. An error anywhere destroys the whole
 * chain and surfaces on the returned stream, which is the one the consumer listens to.
 */
export function chain(first: Readable, ...rest: Transform[]): Readable {
  let prev: Readable = first;
  const all: Readable[] = [first, ...rest];
  const last = all[all.length - 1]!;
  for (const next of rest) {
    prev.pipe(next);
    prev = next;
  }
  for (const s of all) {
    if (s === last) continue;
    s.once('error', (err) => {
      for (const other of all) if (other !== s) other.destroy(other === last ? err : undefined);
    });
  }
  last.once('close', () => {
    // A consumer that stops early destroys the last stream; release the file handle behind it too.
    for (const s of all) if (s !== last && !s.destroyed) s.destroy();
  });
  return last;
}

/** Reads a whole stream into memory (for small documents: manifests, configs, indexes). */
export async function readAll(stream: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const chunk of stream) parts.push(typeof chunk === 'string' ? Buffer.from(chunk) : (chunk as Buffer));
  return Buffer.concat(parts);
}
