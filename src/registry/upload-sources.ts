/**
 * Where the bytes of a blob upload come from, and which repositories it may be mounted from:
 * shared by image pushes and cache exports, which send blobs the same way.
 *
 * An upload that breaks part-way resumes from an offset, so a source opens afresh at any offset:
 * a blob in the store is read from its file there; any other stream is read again from its start
 * with the bytes before the offset dropped.
 */
import { createReadStream } from 'node:fs';
import { Transform, type Readable, type TransformCallback } from 'node:stream';
import type { Descriptor } from '../oci/types.js';
import type { Store } from '../store/index.js';
import type { BlobRef, UploadSource } from './blobs.js';
import type { RegistryClient } from './client.js';

/** A blob the store holds, read from its file. */
export function storeUploadSource(store: Store, desc: Descriptor): UploadSource {
  return {
    digest: desc.digest,
    size: desc.size,
    // From the start the store verifies what it reads; a resumed upload reads the rest raw, and
    // the registry's digest check at commit covers the whole.
    open: async (offset) => (offset === 0 ? store.openBlob(desc) : createReadStream(store.blobPath(desc.digest), { start: offset })),
  };
}

/** A blob read from a stream `open` gives from its start (a resumed upload skips what was sent). */
export function streamUploadSource(blob: BlobRef, open: () => Promise<Readable>): UploadSource {
  return { digest: blob.digest, size: blob.size, open: async (offset) => skipBytes(await open(), offset) };
}

/** A stream of `stream` without its first `n` bytes. */
export function skipBytes(stream: Readable, n: number): Readable {
  if (n === 0) return stream;
  let left = n;
  const skipper = new Transform({
    transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback) {
      if (left >= chunk.length) {
        left -= chunk.length;
        done();
        return;
      }
      const out = chunk.subarray(left);
      left = 0;
      done(null, out);
    },
  });
  stream.on('error', (err) => skipper.destroy(err));
  return stream.pipe(skipper);
}

/** A repository known to hold a blob. */
export interface BlobOrigin {
  registry: string;
  repository: string;
}

/**
 * The repositories an upload to `repository` on `client`'s registry can mount the blob from: the
 * origins on the same registry other than the target itself, each once, in the order given.
 */
export function mountCandidates(client: RegistryClient, repository: string, origins: Iterable<BlobOrigin>): string[] {
  const out: string[] = [];
  for (const o of origins) {
    if (o.registry === client.registry && o.repository !== repository && !out.includes(o.repository)) out.push(o.repository);
  }
  return out;
}
