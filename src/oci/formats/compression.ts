/**
 * Whole-archive and rootfs-tar compression: `docker save | gzip`, `.tar.zst`, `.tar.xz` and the like
 * are accepted wherever a tar is. gzip and zstd go through the layer module's decompressor; xz and
 * bzip2, which are not layer compressions, are run through their programs.
 */
import { spawn } from 'node:child_process';
import { open } from 'node:fs/promises';
import { PassThrough, type Readable } from 'node:stream';
import { CompressionError, decompress, detectCompression } from '../layer/index.js';

export type StreamCompression = 'none' | 'gzip' | 'zstd' | 'xz' | 'bzip2';

/** Bytes needed to tell the compressions apart. */
export const SNIFF_BYTES = 6;

export function sniffCompression(head: Uint8Array): StreamCompression {
  // gzip and zstd are told apart as the layer module tells layers apart.
  const layer = detectCompression(head);
  if (layer !== 'none') return layer;
  const starts = (bytes: number[]) => head.length >= bytes.length && bytes.every((b, i) => head[i] === b);
  if (starts([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00])) return 'xz';
  if (starts([0x42, 0x5a, 0x68])) return 'bzip2';
  return 'none';
}

/** The first `n` bytes of a file (fewer when it is shorter). */
export async function readHead(path: string, n: number, position = 0): Promise<Buffer> {
  const fh = await open(path, 'r');
  try {
    const buf = Buffer.alloc(n);
    const { bytesRead } = await fh.read(buf, 0, n, position);
    return buf.subarray(0, bytesRead);
  } finally {
    await fh.close();
  }
}

/** `input` decompressed according to `kind`; errors of either side surface on the returned stream. */
export function decompressAs(input: Readable, kind: StreamCompression): Readable {
  switch (kind) {
    case 'none':
    case 'gzip':
    case 'zstd':
      return kind === 'none' ? input : decompress(input);
    case 'xz':
      return programFilter(input, 'xz', ['-d', '-c', '-q'], 'xz-utils');
    case 'bzip2':
      return programFilter(input, 'bzip2', ['-d', '-c', '-q'], 'bzip2');
  }
}

/**
 * Runs `command` with `input` on stdin. The output ends only once the program has exited with status
 * 0, so a corrupt or truncated input cannot pass for a short but complete stream.
 */
function programFilter(input: Readable, command: string, args: string[], debianPackage: string): Readable {
  const out = new PassThrough({ highWaterMark: 1 << 20 });
  const child = spawn(command, args, { stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  let stdoutEnded = false;
  let exit: number | null | undefined;
  const fail = (err: Error) => {
    if (!out.destroyed) out.destroy(err);
    input.destroy();
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  };
  const settle = () => {
    if (!stdoutEnded || exit === undefined || out.destroyed) return;
    if (exit === 0) out.end();
    else fail(new CompressionError(`corrupt ${command} data: ${stderr.trim() || `${command} exited with status ${exit}`}`));
  };
  child.on('error', (err: NodeJS.ErrnoException) => {
    fail(
      new CompressionError(err.code === 'ENOENT' ? `the ${command} program is not installed` : `cannot run ${command}: ${err.message}`, {
        cause: err,
        hint: err.code === 'ENOENT' ? `install it (Debian: apt-get install ${debianPackage}) or decompress the file first` : undefined,
      }),
    );
  });
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (s: string) => {
    if (stderr.length < 4096) stderr += s;
  });
  child.stdin.on('error', () => undefined); // EPIPE when the program died: its exit status says why
  input.on('error', (err) => fail(err));
  input.pipe(child.stdin);
  child.stdout.pipe(out, { end: false });
  child.stdout.on('end', () => {
    stdoutEnded = true;
    settle();
  });
  child.on('close', (code) => {
    exit = code;
    settle();
  });
  // A consumer that stops reading early must not leave the program running.
  out.on('close', () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    input.destroy();
  });
  return out;
}
