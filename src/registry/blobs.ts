/**
 * Blobs over the API.
 *
 * Download: a GET (following the redirect to storage, without credentials) streamed to the caller;
 * when the connection breaks mid-body, the download continues with `Range: bytes=N-` from where it
 * broke (or, if the server ignores ranges, from the start, skipping what was already passed on).
 * Content is verified against digest and size as it flows, so a corrupt blob fails at its end and
 * a caller writing to the store keeps nothing.
 *
 * Upload: HEAD first (nothing to do when the registry has it); a cross-repository mount when kiln
 * knows the blob is in another repository of the same registry; else a session (POST) and either
 * one PUT with the whole blob (small blobs) or PATCHes of `chunkSize` bytes with Content-Range and a
 * final PUT. A broken PATCH asks the session where it stands (GET → `Range: 0-N`, or 416) and goes
 * on from there; a session the registry no longer recognises starts over, within the retry budget.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { createHash, type Hash } from 'node:crypto';
import { Readable, Transform, type TransformCallback } from 'node:stream';
import { isDigest, type Digest } from '../oci/digest.js';
import { repositoryScope } from './auth/authenticator.js';
import { RegistryClient } from './client.js';
import { AuthError, DeniedError, DigestMismatchError, NotFoundError, RegistryError, RegistryProtocolError, RegistryUnavailableError } from './errors.js';
import { headerValue, toNetworkError, type HttpResponse } from './transport/http.js';
import { Backoff, sleep } from './transport/retry.js';
import { endpointOf } from './transport/status.js';

export interface BlobRef {
  digest: Digest;
  size: number;
}

// ------------------------------------------------------------------ download

/** `bytes 100-199/200` → 100. */
function rangeStart(value: string | undefined): number | undefined {
  const m = /^bytes (\d+)-\d+\/(?:\d+|\*)$/.exec(value?.trim() ?? '');
  return m ? Number(m[1]) : undefined;
}

async function openAt(client: RegistryClient, repository: string, blob: BlobRef, offset: number): Promise<{ res: HttpResponse; start: number }> {
  const res = await client.request({
    method: 'GET',
    path: `/v2/${repository}/blobs/${blob.digest}`,
    scopes: [repositoryScope(repository, 'pull')],
    headers: offset > 0 ? { Range: `bytes=${offset}-` } : {},
    expect: offset > 0 ? [200, 206] : [200],
    subject: `blob ${blob.digest}`,
  });
  if (res.status === 206) {
    const start = rangeStart(headerValue(res.headers, 'content-range'));
    if (start === undefined || start > offset) {
      res.body.destroy();
      throw new RegistryProtocolError('the registry answered a range request with an unusable Content-Range', {
        registry: client.registry,
        endpoint: endpointOf('GET', res.url),
        status: 206,
      });
    }
    return { res, start };
  }
  return { res, start: 0 };
}

/**
 * The blob's bytes as one stream, resuming across broken connections, verified against digest and
 * size (a mismatch fails the stream with DigestMismatchError at the end, or at the first byte too
 * many).
 */
export function downloadBlob(
  client: RegistryClient,
  repository: string,
  blob: BlobRef,
  opts: { onResume?: (offset: number) => void; /** Bytes received so far, after every chunk. */ onProgress?: (received: number) => void } = {},
): Readable {
  let endpoint = `GET /v2/${repository}/blobs/${blob.digest}`;
  async function* bytes(): AsyncGenerator<Buffer> {
    let received = 0;
    const backoff = new Backoff(client.retry);
    for (;;) {
      if (received > 0) opts.onResume?.(received);
      const { res, start } = await openAt(client, repository, blob, received);
      endpoint = endpointOf('GET', res.url);
      let skip = received - start;
      try {
        for await (const chunk of res.body) {
          let b = chunk as Buffer;
          if (skip > 0) {
            if (b.length <= skip) {
              skip -= b.length;
              continue;
            }
            b = b.subarray(skip);
            skip = 0;
          }
          received += b.length;
          opts.onProgress?.(received);
          yield b;
        }
      } catch (err) {
        res.body.destroy();
        const wait = backoff.next();
        if (wait === undefined) {
          throw new RegistryUnavailableError(`the download of blob ${blob.digest} broke off after ${received} bytes`, { registry: client.registry, endpoint }, { cause: toNetworkError(err) });
        }
        await sleep(wait);
        continue;
      }
      // A body that ended cleanly but short is a connection that closed early without an error.
      if (received < blob.size) {
        const wait = backoff.next();
        if (wait === undefined) {
          throw new RegistryUnavailableError(`the download of blob ${blob.digest} ended after ${received} of ${blob.size} bytes`, { registry: client.registry, endpoint });
        }
        await sleep(wait);
        continue;
      }
      return;
    }
  }
  const source = Readable.from(bytes(), { objectMode: false });
  const verify = new RegistryVerifier(blob, () => ({ registry: client.registry, endpoint }));
  source.on('error', (err) => verify.destroy(err));
  verify.on('close', () => {
    if (!source.destroyed) source.destroy();
  });
  return source.pipe(verify);
}

/** Checks bytes against digest and size as they pass; failures are DigestMismatchErrors naming the registry. */
export class RegistryVerifier extends Transform {
  private readonly hash: Hash = createHash('sha256');
  private count = 0;

  constructor(
    private readonly blob: { digest: Digest; size?: number },
    private readonly where: () => { registry: string; endpoint: string },
  ) {
    super();
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    this.count += chunk.length;
    if (this.blob.size !== undefined && this.count > this.blob.size) {
      done(new DigestMismatchError(`blob ${this.blob.digest} is longer than its ${this.blob.size} bytes`, this.where()));
      return;
    }
    this.hash.update(chunk);
    done(null, chunk);
  }

  override _flush(done: TransformCallback): void {
    const actual = `sha256:${this.hash.digest('hex')}`;
    if (this.blob.size !== undefined && this.count !== this.blob.size) {
      done(new DigestMismatchError(`blob ${this.blob.digest} has ${this.count} bytes, its descriptor says ${this.blob.size}`, this.where()));
    } else if (actual !== this.blob.digest) {
      done(new DigestMismatchError(`blob ${this.blob.digest} hashes to ${actual}`, this.where()));
    } else {
      done();
    }
  }
}

// ------------------------------------------------------------------ upload

export interface UploadSource extends BlobRef {
  /** A fresh stream of the blob from `offset` on. */
  open(offset: number): Promise<Readable>;
}

export interface UploadOptions {
  /** Blobs larger than this are sent in chunks (default 16 MiB). */
  monolithicMax?: number;
  /** Chunk size for chunked uploads (default 8 MiB). */
  chunkSize?: number;
  /** Repositories on the same registry that hold the blob, to mount from (tried in order). */
  mountFrom?: readonly string[];
}

export type UploadOutcome = { kind: 'exists' } | { kind: 'mounted'; from: string } | { kind: 'pushed'; resumed: number; restarted: number };

export const DEFAULT_MONOLITHIC_MAX = 16 * 1024 * 1024;
export const DEFAULT_CHUNK_SIZE = 8 * 1024 * 1024;

/** Bytes of `blob` handed to the connection so far, after every chunk (`blob.size` is the whole). */
export type UploadObserver = (blob: BlobRef, sent: number) => void;

const uploadObservers = new AsyncLocalStorage<UploadObserver>();

/**
 * Runs `fn` with every blob upload it starts (such as those of a whole image push) reporting its
 * bytes to `observer` as they go out. A retried upload reports from where it starts again.
 */
export function observeUploads<T>(observer: UploadObserver, fn: () => T): T {
  return uploadObservers.run(observer, fn);
}

/** `stream` counted from `start`: the observer hears the running total after every chunk. */
function counted(stream: Readable, start: number, report: ((sent: number) => void) | undefined): Readable {
  if (!report) return stream;
  let sent = start;
  const counter = new Transform({
    transform(chunk: Buffer, _enc, done) {
      sent += chunk.length;
      report(sent);
      done(null, chunk);
    },
  });
  stream.on('error', (err) => counter.destroy(err));
  counter.on('close', () => stream.destroy());
  return stream.pipe(counter);
}

/** Whether the registry has the blob in this repository. */
export async function blobExists(client: RegistryClient, repository: string, digest: Digest, scopes?: readonly string[]): Promise<boolean> {
  try {
    const res = await client.request({
      method: 'HEAD',
      path: `/v2/${repository}/blobs/${digest}`,
      scopes: scopes ?? [repositoryScope(repository, 'pull')],
      expect: [200],
      subject: `blob ${digest}`,
    });
    res.body.resume();
    return true;
  } catch (err) {
    if (err instanceof NotFoundError) return false;
    throw err;
  }
}

/** A session the registry forgot or invalidated: the upload has to start over. */
class RestartUpload extends Error {}

function uploadLocation(client: RegistryClient, res: HttpResponse): URL {
  const loc = RegistryClient.location(res);
  if (!loc) {
    throw new RegistryProtocolError('the registry started an upload without saying where (no Location header)', {
      registry: client.registry,
      endpoint: endpointOf('POST', res.url),
      status: res.status,
    });
  }
  return loc;
}

/**
 * `Range: 0-1234` (the upload's progress) → 1235 bytes received. `0-0` means nothing yet for a
 * fresh session (docker's registry says the same for one byte; a wrong guess there fails the
 * commit's digest check, which starts the upload over).
 */
function uploadedBytes(res: HttpResponse): number | undefined {
  const m = /^(?:bytes=)?0-(\d+)$/.exec(headerValue(res.headers, 'range')?.trim() ?? '');
  if (!m) return undefined;
  return m[1] === '0' ? 0 : Number(m[1]) + 1;
}

function withDigest(url: URL, digest: Digest): URL {
  const u = new URL(url);
  u.searchParams.set('digest', digest);
  return u;
}

/** Pushes one blob into `repository` unless it is there already. */
export async function uploadBlob(client: RegistryClient, repository: string, src: UploadSource, opts: UploadOptions = {}): Promise<UploadOutcome> {
  const push = repositoryScope(repository, 'pull,push');
  if (await blobExists(client, repository, src.digest, [push])) return { kind: 'exists' };
  let session: URL | undefined;
  // A few candidates at most: each one that fails costs a round trip before the upload.
  for (const from of (opts.mountFrom ?? []).filter((r) => r !== repository).slice(0, 3)) {
    const url = new URL(`/v2/${repository}/blobs/uploads/`, await client.baseURL());
    url.searchParams.set('mount', src.digest);
    url.searchParams.set('from', from);
    let res: HttpResponse;
    try {
      res = await client.request({ method: 'POST', url, scopes: [push, repositoryScope(from, 'pull')], expect: [201, 202] });
    } catch (err) {
      // No read access to the source repository (or it is gone): an ordinary upload still works.
      if (err instanceof AuthError || err instanceof DeniedError || err instanceof NotFoundError) continue;
      throw err;
    }
    res.body.resume();
    if (res.status === 201) return { kind: 'mounted', from };
    // 202: the registry could not mount and opened an ordinary upload session instead.
    session = uploadLocation(client, res);
    break;
  }
  const backoff = new Backoff(client.retry);
  let restarted = 0;
  let resumed = 0;
  for (;;) {
    try {
      if (!session) {
        const res = await client.request({ method: 'POST', path: `/v2/${repository}/blobs/uploads/`, scopes: [push], expect: [202] });
        res.body.resume();
        session = uploadLocation(client, res);
      }
      const monolithicMax = opts.monolithicMax ?? DEFAULT_MONOLITHIC_MAX;
      const observer = uploadObservers.getStore();
      const report = observer && ((sent: number) => observer(src, sent));
      if (src.size <= monolithicMax) await putWhole(client, push, session, src, report);
      else resumed += await putChunked(client, push, session, src, opts.chunkSize ?? DEFAULT_CHUNK_SIZE, report);
      return { kind: 'pushed', resumed, restarted };
    } catch (err) {
      session = undefined;
      if (!isTransient(err) && !(err instanceof RestartUpload)) throw err;
      const wait = backoff.next();
      if (wait === undefined) {
        if (err instanceof RestartUpload) {
          throw new RegistryUnavailableError(`the upload of blob ${src.digest} kept failing: ${err.message}`, { registry: client.registry });
        }
        throw err;
      }
      restarted++;
      await sleep(wait);
    }
  }
}

/** Failures that another attempt may not repeat: connection trouble, 5xx, a lost session. */
function isTransient(err: unknown): boolean {
  if (err instanceof RegistryUnavailableError) return true;
  if (err instanceof RegistryError) {
    if (err.retryable) return true;
    if (err.status !== undefined && err.status >= 500) return true;
    return err.errors.some((e) => e.code === 'BLOB_UPLOAD_UNKNOWN' || e.code === 'BLOB_UPLOAD_INVALID');
  }
  return err instanceof Error && err.name === 'NetworkError';
}

async function putWhole(client: RegistryClient, push: string, session: URL, src: UploadSource, report?: (sent: number) => void): Promise<void> {
  const res = await client.request({
    method: 'PUT',
    url: withDigest(session, src.digest),
    scopes: [push],
    headers: { 'Content-Type': 'application/octet-stream', 'Content-Length': String(src.size) },
    body: async () => counted(await src.open(0), 0, report),
    expect: [201, 204],
    retry: false,
  });
  res.body.resume();
  checkCreated(client, res, src.digest);
}

function checkCreated(client: RegistryClient, res: HttpResponse, digest: Digest): void {
  const claimed = headerValue(res.headers, 'docker-content-digest');
  if (claimed && isDigest(claimed) && claimed !== digest) {
    throw new DigestMismatchError(`the registry stored blob ${digest} as ${claimed}`, { registry: client.registry, endpoint: endpointOf('PUT', res.url) });
  }
}

/** Reads exactly the bytes asked for from a stream, chunk by chunk, keeping what is left over. */
class ByteReader {
  private readonly it: AsyncIterator<Buffer>;
  private rest: Buffer | undefined;
  constructor(private readonly stream: Readable) {
    this.it = stream[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
  }
  async *take(n: number): AsyncGenerator<Buffer> {
    while (n > 0) {
      let b = this.rest;
      this.rest = undefined;
      if (!b) {
        const r = await this.it.next();
        if (r.done) throw new Error(`the blob ended ${n} bytes early`);
        b = r.value;
      }
      if (b.length > n) {
        this.rest = b.subarray(n);
        b = b.subarray(0, n);
      }
      n -= b.length;
      yield b;
    }
  }
  destroy(): void {
    this.stream.destroy();
  }
}

/** PATCHes the blob in chunks and commits it; answers how many times it resumed a broken session. */
async function putChunked(client: RegistryClient, push: string, start: URL, src: UploadSource, chunkSize: number, report?: (sent: number) => void): Promise<number> {
  let location = start;
  let offset = 0;
  let resumes = 0;
  let reader = new ByteReader(await src.open(0));
  const backoff = new Backoff(client.retry);
  try {
    while (offset < src.size) {
      const n = Math.min(chunkSize, src.size - offset);
      try {
        const res = await client.request({
          method: 'PATCH',
          url: location,
          scopes: [push],
          headers: {
            'Content-Type': 'application/octet-stream',
            'Content-Length': String(n),
            'Content-Range': `${offset}-${offset + n - 1}`,
          },
          body: () => counted(Readable.from(reader.take(n)), offset, report),
          expect: [202],
          retry: false,
        });
        res.body.resume();
        location = uploadLocation(client, res);
        const have = uploadedBytes(res) ?? offset + n;
        if (have !== offset + n) {
          // The registry counts differently from us; believe it and send from there.
          offset = have;
          reader.destroy();
          reader = new ByteReader(await src.open(offset));
        } else {
          offset = have;
        }
      } catch (err) {
        reader.destroy();
        const is416 = err instanceof RegistryError && err.status === 416;
        if (!is416 && !isTransient(err)) throw err;
        const wait = backoff.next();
        if (wait === undefined) throw err;
        await sleep(wait);
        const status = await uploadStatus(client, push, location);
        location = status.location;
        offset = status.offset;
        resumes++;
        reader = new ByteReader(await src.open(offset));
      }
    }
  } finally {
    reader.destroy();
  }
  let res: HttpResponse;
  try {
    res = await client.request({
      method: 'PUT',
      url: withDigest(location, src.digest),
      scopes: [push],
      expect: [201, 204],
      retry: false,
    });
  } catch (err) {
    // After a resume the registry may hold a byte more or less than it said; the digest check at
    // commit is where that shows, and a fresh session is the cure.
    if (resumes > 0 && err instanceof DigestMismatchError) throw new RestartUpload(err.message);
    throw err;
  }
  res.body.resume();
  checkCreated(client, res, src.digest);
  return resumes;
}

/** Where an upload session stands; a session the registry no longer accepts restarts the upload. */
async function uploadStatus(client: RegistryClient, push: string, location: URL): Promise<{ location: URL; offset: number }> {
  let res: HttpResponse;
  try {
    res = await client.request({ method: 'GET', url: location, scopes: [push], expect: [204] });
  } catch (err) {
    if (err instanceof RegistryError && !(err instanceof RegistryUnavailableError) && (err.status === 404 || err.status === 400 || err.status === 416)) {
      throw new RestartUpload(`the registry dropped the upload session (${err.message})`);
    }
    throw err;
  }
  res.body.resume();
  return { location: RegistryClient.location(res) ?? location, offset: uploadedBytes(res) ?? 0 };
}
