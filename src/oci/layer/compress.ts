/**
 * Layer compression: parallel deterministic gzip, zstd, and decompression by magic bytes, with the
 * digests a layer descriptor needs computed while the bytes stream through.
 *
 * gzip: the input is cut into fixed-size blocks, each compressed as an independent gzip member on
 * zlib's thread pool, several at a time, and written out in order. RFC 1952 allows any number of
 * members and every OCI consumer (Go's compress/gzip, zlib's gunzip, Node's createGunzip) reads them
 * all, so this uses every core while holding at most 2 × `concurrency` blocks in memory. The output
 * is a function of the input bytes, the level and the block size only: member boundaries do not
 * depend on how the input arrives, headers carry mtime 0 and OS 3 (Unix). (zlib's own output can
 * differ between zlib builds, so byte equality across Node versions is not promised.)
 *
 * zstd: Node 20 has no zstd, so the `zstd` program is run as a filter. Its multi-threaded mode gives
 * the same bytes whatever the thread count and however the input is split, so it is used with one
 * worker per core.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { spawn, type ChildProcessByStdio } from 'node:child_process';
import { availableParallelism } from 'node:os';
import { Duplex, PassThrough, Readable, Transform, finished, pipeline, type TransformCallback, type Writable } from 'node:stream';
import { createGunzip, gzip } from 'node:zlib';
import { DigestingStream, type Digest } from '../digest.js';
import type { Compression } from '../mediatypes.js';
import { CompressionError } from './errors.js';

export type { Compression };

export interface CompressOptions {
  /** gzip 1–9 (default 6); zstd 1–19 (default 3). */
  level?: number;
  /** gzip: bytes of input per member (default 1 MiB). Part of what determines the output bytes. */
  chunkSize?: number;
  /** gzip: members compressed at once (default: see defaultGzipConcurrency). Does not change the output. */
  concurrency?: number;
}

export const DEFAULT_GZIP_LEVEL = 6;
export const DEFAULT_ZSTD_LEVEL = 3;
export const DEFAULT_GZIP_CHUNK = 1024 * 1024;

const GZIP_MAGIC = [0x1f, 0x8b];
const ZSTD_MAGIC = [0x28, 0xb5, 0x2f, 0xfd];

/**
 * Members compressed at once by default: one more than the cores, so a core never waits while the
 * main thread walks the tree and hashes, but at most one less than libuv's thread pool (zlib and
 * file reads share it; UV_THREADPOOL_SIZE, default 4, must be raised at process start for more).
 */
export function defaultGzipConcurrency(): number {
  const pool = Number(process.env.UV_THREADPOOL_SIZE) || 4;
  return Math.max(1, Math.min(availableParallelism() + 1, pool - 1));
}

/** The compression a blob starts with (its first 4 bytes suffice); `none` when neither magic matches. */
export function detectCompression(head: Uint8Array): Compression {
  if (head.length >= 2 && head[0] === GZIP_MAGIC[0] && head[1] === GZIP_MAGIC[1]) return 'gzip';
  if (head.length >= 4 && ZSTD_MAGIC.every((b, i) => head[i] === b)) return 'zstd';
  return 'none';
}

/** A transform that compresses what is written to it. */
export function createCompressor(compression: Compression, options: CompressOptions = {}): Duplex {
  switch (compression) {
    case 'none':
      return new PassThrough({ highWaterMark: DEFAULT_GZIP_CHUNK });
    case 'gzip':
      return new ParallelGzip(options);
    case 'zstd': {
      const level = options.level ?? DEFAULT_ZSTD_LEVEL;
      if (!Number.isInteger(level) || level < 1 || level > 19) throw new CompressionError(`zstd level ${level} is not in 1..19`);
      return new ProcessFilter('zstd', ['-q', '-c', `-${level}`, `-T${options.concurrency ?? availableParallelism()}`]);
    }
    default:
      throw new CompressionError(`unknown compression "${String(compression)}"`);
  }
}

/** `input` compressed. Errors of `input` and of the compressor surface on the returned stream. */
export function compress(input: Readable, compression: Compression, options: CompressOptions = {}): Readable {
  return pipeline(input, createCompressor(compression, options), () => undefined) as unknown as Readable;
}

/** `input` decompressed: gzip (any number of members), zstd or plain, told apart by magic bytes. */
export function decompress(input: Readable): Readable {
  const out = new PassThrough({ highWaterMark: DEFAULT_GZIP_CHUNK });
  peekStream(input, 4).then(
    ({ head, stream }) => {
      const kind = detectCompression(head);
      if (kind === 'none') {
        pipeline(stream, out, () => undefined);
        return;
      }
      const decoder = kind === 'gzip' ? createGunzip({ chunkSize: 256 * 1024 }) : new ProcessFilter('zstd', ['-q', '-d', '-c']);
      // Wired by hand rather than with pipeline(): `out` must fail with the typed error, and the zstd
      // filter can fail after its input has finished, when a pipeline would no longer be listening.
      const fail = (err: NodeJS.ErrnoException) => {
        if (!out.destroyed) out.destroy(decodeError(err, kind));
        stream.destroy();
        decoder.destroy();
      };
      stream.on('error', fail);
      decoder.on('error', fail);
      out.on('close', () => {
        if (!out.readableEnded) {
          stream.destroy();
          decoder.destroy();
        }
      });
      stream.pipe(decoder).pipe(out);
    },
    (err: Error) => out.destroy(err),
  );
  return out;
}

function decodeError(err: NodeJS.ErrnoException, kind: Compression): Error {
  if (typeof err.code === 'string' && err.code.startsWith('Z_')) {
    return new CompressionError(`corrupt ${kind} data: ${err.message}`, { cause: err });
  }
  return err;
}

export interface LayerDigests {
  /** sha256 of the bytes as stored (compressed). */
  digest: Digest;
  /** Size of the bytes as stored. */
  size: number;
  /** sha256 of the uncompressed tar (the config's rootfs.diff_ids entry). */
  diffID: Digest;
  uncompressedSize: number;
}

export interface CompressedLayer {
  /** The compressed bytes; `result` settles once this stream has been read to its end. */
  stream: Readable;
  result: Promise<LayerDigests>;
}

/**
 * Compresses an uncompressed layer tar, computing its diffID and the compressed digest and size on
 * the way through. Nothing is buffered beyond the compressor's window.
 */
export function compressLayer(uncompressed: Readable, compression: Compression, options: CompressOptions = {}): CompressedLayer {
  const diff = new DigestingStream();
  const noop = () => undefined;
  let stream: Readable;
  let stored: DigestingStream;
  if (compression === 'none') {
    stream = pipeline(uncompressed, diff, noop) as unknown as Readable;
    stored = diff;
  } else {
    stored = new DigestingStream();
    const observer = compressionObservers.getStore();
    stream = observer
      ? (pipeline(uncompressed, diff, createCompressor(compression, options), stored, observedOutput(observer, compression, diff, stored), noop) as unknown as Readable)
      : (pipeline(uncompressed, diff, createCompressor(compression, options), stored, noop) as unknown as Readable);
  }
  const result = new Promise<LayerDigests>((resolve, reject) => {
    finished(stream, (err) => {
      if (err) return reject(err);
      resolve({ digest: stored.digest, size: stored.size, diffID: diff.digest, uncompressedSize: diff.size });
    });
  });
  // The stream reports the same failure; a caller that only watches the stream must not crash the process.
  result.catch(noop);
  return { stream, result };
}

/** Progress of one layer compression: uncompressed bytes read, compressed bytes written so far. */
export interface CompressionProgress {
  compression: Compression;
  read: number;
  written: number;
  /** True once, on the last call, when the compressed stream is complete. */
  done: boolean;
}

export type CompressionObserver = (progress: CompressionProgress) => void;

const compressionObservers = new AsyncLocalStorage<CompressionObserver>();

/**
 * Runs `fn` with every layer compression it starts (directly or deep inside, such as the store
 * making a layer's gzip variant) reporting to `observer` as compressed bytes come out: once per
 * output chunk, and once more with `done` at the end. Callers throttle what they show.
 */
export function observeCompression<T>(observer: CompressionObserver, fn: () => T): T {
  return compressionObservers.run(observer, fn);
}

/** A pass-through at the end of an observed compression, reporting the counts of both sides. */
function observedOutput(observer: CompressionObserver, compression: Compression, input: DigestingStream, output: DigestingStream): Transform {
  return new Transform({
    transform(chunk: Buffer, _enc, done) {
      observer({ compression, read: input.size, written: output.size, done: false });
      done(null, chunk);
    },
    flush(done) {
      observer({ compression, read: input.size, written: output.size, done: true });
      done();
    },
  });
}

// ---------------------------------------------------------------------------------------------

/**
 * Fixed-size blocks → independent gzip members, compressed concurrently, emitted in order.
 *
 * Up to `concurrency` blocks are compressed at a time; finished members wait for the ones before them,
 * and input keeps being accepted while fewer than 2 × `concurrency` members are pending, so a core
 * does not sit idle behind a slower block ahead of it. Memory stays within those pending blocks.
 */
class ParallelGzip extends Transform {
  private readonly level: number;
  private readonly chunkSize: number;
  private readonly concurrency: number;
  private parts: Buffer[] = [];
  private partsLength = 0;
  /** Members in output order: compressing, or done and waiting for those ahead. */
  private readonly queue: Array<{ out?: Buffer }> = [];
  private running = 0;
  private members = 0;
  private failed: Error | undefined;
  /** The write or flush callback held back until there is room (or everything is out). */
  private waiting: { done: TransformCallback; final: boolean } | undefined;

  constructor(options: CompressOptions) {
    const chunkSize = options.chunkSize ?? DEFAULT_GZIP_CHUNK;
    super({ readableHighWaterMark: chunkSize });
    this.level = options.level ?? DEFAULT_GZIP_LEVEL;
    this.chunkSize = chunkSize;
    this.concurrency = Math.max(1, options.concurrency ?? defaultGzipConcurrency());
    if (!Number.isInteger(this.level) || this.level < 0 || this.level > 9) throw new CompressionError(`gzip level ${this.level} is not in 0..9`);
    if (!Number.isInteger(chunkSize) || chunkSize < 64 * 1024) throw new CompressionError(`gzip chunk size ${chunkSize} is below 64 KiB`);
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    this.parts.push(chunk);
    this.partsLength += chunk.length;
    this.waiting = { done, final: false };
    this.advance();
  }

  override _flush(done: TransformCallback): void {
    this.waiting = { done, final: true };
    this.advance();
  }

  /** Starts what there is room for, emits finished members in order, releases the held callback. */
  private advance(): void {
    const w = this.waiting;
    if (this.failed) {
      if (w) {
        this.waiting = undefined;
        w.done(this.failed);
      }
      return;
    }
    while (this.queue[0]?.out) this.push(this.queue.shift()!.out);
    const final = w?.final ?? false;
    while (this.running < this.concurrency && this.queue.length < 2 * this.concurrency) {
      if (this.partsLength >= this.chunkSize) this.dispatch(this.takeBlock(this.chunkSize));
      else if (final && (this.partsLength > 0 || this.members === 0)) this.dispatch(this.takeBlock(this.partsLength));
      else break;
    }
    if (!w) return;
    const released = final ? this.queue.length === 0 : this.partsLength < this.chunkSize;
    if (released) {
      this.waiting = undefined;
      w.done();
    }
  }

  private dispatch(block: Buffer): void {
    this.members++;
    this.running++;
    const slot: { out?: Buffer } = {};
    this.queue.push(slot);
    // One output buffer per member keeps the work of a block in a single thread-pool task.
    gzip(block, { level: this.level, chunkSize: Math.max(64 * 1024, block.length + 1024) }, (err, out) => {
      this.running--;
      if (err) this.failed ??= err;
      else {
        out[9] = 3; // OS = Unix whatever the host, so the bytes match across platforms
        slot.out = out;
      }
      this.advance();
    });
  }

  override _destroy(err: Error | null, done: (err?: Error | null) => void): void {
    this.failed ??= err ?? new Error('gzip stream destroyed');
    this.queue.length = 0;
    this.parts = [];
    done(err);
  }

  /** The first `n` buffered bytes as one buffer, copying only when they span parts. */
  private takeBlock(n: number): Buffer {
    const first = this.parts[0];
    if (first && first.length === n) {
      this.parts.shift();
      this.partsLength -= n;
      return first;
    }
    const block = Buffer.allocUnsafe(n);
    let filled = 0;
    while (filled < n) {
      const part = this.parts[0]!;
      const use = Math.min(part.length, n - filled);
      part.copy(block, filled, 0, use);
      filled += use;
      if (use === part.length) this.parts.shift();
      else this.parts[0] = part.subarray(use);
    }
    this.partsLength -= n;
    return block;
  }
}

/**
 * A child process used as a transform (stdin → stdout). Its output ends only once the process has
 * exited successfully, so a failing compressor cannot pass for a short but complete stream.
 */
class ProcessFilter extends Duplex {
  private readonly child: ChildProcessByStdio<Writable, Readable, Readable>;
  private stderr = '';
  private stdoutEnded = false;
  private exit: { code: number | null; signal: NodeJS.Signals | null } | undefined;

  constructor(
    private readonly command: string,
    args: string[],
  ) {
    super({ readableHighWaterMark: DEFAULT_GZIP_CHUNK });
    this.child = spawn(command, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    this.child.on('error', (err: NodeJS.ErrnoException) => {
      this.destroy(
        new CompressionError(
          err.code === 'ENOENT' ? `the ${command} program is not installed` : `cannot run ${command}: ${err.message}`,
          { cause: err, hint: err.code === 'ENOENT' ? `install ${command} (Debian: apt-get install ${command})` : undefined },
        ),
      );
    });
    this.child.stdin.on('error', () => undefined); // EPIPE when the process died; its exit status tells why
    this.child.stderr.setEncoding('utf8');
    this.child.stderr.on('data', (s: string) => {
      if (this.stderr.length < 4096) this.stderr += s;
    });
    this.child.stdout.on('data', (chunk: Buffer) => {
      if (!this.push(chunk)) this.child.stdout.pause();
    });
    this.child.stdout.on('end', () => {
      this.stdoutEnded = true;
      this.settle();
    });
    this.child.on('close', (code, signal) => {
      this.exit = { code, signal };
      this.settle();
    });
  }

  private settle(): void {
    if (!this.stdoutEnded || !this.exit || this.destroyed) return;
    if (this.exit.code === 0) this.push(null);
    else {
      const why = this.stderr.trim() || (this.exit.signal ? `killed by ${this.exit.signal}` : `exit status ${this.exit.code}`);
      this.destroy(new CompressionError(`${this.command}: ${why}`));
    }
  }

  override _read(): void {
    this.child.stdout.resume();
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, done: (err?: Error | null) => void): void {
    if (this.exit) return done();
    this.child.stdin.write(chunk, () => done());
  }

  override _final(done: (err?: Error | null) => void): void {
    this.child.stdin.end();
    done();
  }

  override _destroy(err: Error | null, done: (err?: Error | null) => void): void {
    if (!this.exit && this.child.exitCode === null) this.child.kill('SIGKILL');
    done(err);
  }
}

/**
 * The first `n` bytes of a stream, and a stream that still yields everything. The returned stream is
 * a fresh one (not the paused input), so any consumer, whether it pipes or listens for data, starts
 * it flowing.
 */
export function peekStream(input: Readable, n: number): Promise<{ head: Buffer; stream: Readable }> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let length = 0;
    const cleanup = () => {
      input.off('data', onData);
      input.off('end', onEnd);
      input.off('error', onError);
    };
    const onData = (chunk: Buffer | string) => {
      const buf = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
      chunks.push(buf);
      length += buf.length;
      if (length < n) return;
      cleanup();
      input.pause();
      const head = Buffer.concat(chunks);
      const rest = new PassThrough({ highWaterMark: 1 << 20 });
      rest.write(head);
      input.on('error', (err) => rest.destroy(err));
      rest.on('close', () => input.destroy());
      input.pipe(rest);
      resolve({ head, stream: rest });
    };
    const onEnd = () => {
      cleanup();
      const head = Buffer.concat(chunks);
      resolve({ head, stream: Readable.from(head.length ? [head] : [], { objectMode: false }) });
    };
    const onError = (err: Error) => {
      cleanup();
      reject(err);
    };
    input.on('data', onData);
    input.on('end', onEnd);
    input.on('error', onError);
  });
}
