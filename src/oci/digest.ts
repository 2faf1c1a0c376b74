/** Content digests (`sha256:<hex>`): validation and hashing while streaming. */
import { createHash, type Hash } from 'node:crypto';
import { Transform, type TransformCallback } from 'node:stream';
import { KilnError } from '../errors.js';

export type Digest = `sha256:${string}`;

const DIGEST_RE = /^sha256:[a-f0-9]{64}$/;

export class InvalidDigestError extends KilnError {
  constructor(value: string) {
    super('INVALID_DIGEST', `invalid digest "${value.slice(0, 80)}"`, {
      hint: 'digests have the form sha256:<64 lowercase hex digits>',
    });
  }
}

export function isDigest(value: unknown): value is Digest {
  return typeof value === 'string' && DIGEST_RE.test(value);
}

export function parseDigest(value: string): Digest {
  if (!isDigest(value)) throw new InvalidDigestError(value);
  return value;
}

/** The hex part of a digest, used as the blob file name. */
export function digestHex(digest: Digest): string {
  return digest.slice('sha256:'.length);
}

export function sha256(data: string | Uint8Array): Digest {
  return `sha256:${createHash('sha256').update(data).digest('hex')}`;
}

/**
 * A pass-through stream that hashes and counts what flows through it, so a digest and size are known
 * when the stream ends without holding the content.
 */
export class DigestingStream extends Transform {
  private readonly hash: Hash = createHash('sha256');
  private count = 0;
  private result: Digest | undefined;

  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    this.hash.update(chunk);
    this.count += chunk.length;
    done(null, chunk);
  }

  override _flush(done: TransformCallback): void {
    this.result = `sha256:${this.hash.digest('hex')}`;
    done();
  }

  /** Bytes seen so far. */
  get size(): number {
    return this.count;
  }

  /** The digest; only valid once the stream has ended. */
  get digest(): Digest {
    if (!this.result) throw new Error('DigestingStream: digest read before the stream ended');
    return this.result;
  }
}
