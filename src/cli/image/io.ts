/** Output and work files for the archive commands: stdout streaming, atomic output files, store temp dirs. */
import { createWriteStream, promises as fsp } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { PassThrough, type Writable } from 'node:stream';
import { finished } from 'node:stream/promises';
import { InputFileError } from '../../errors.js';
import { tempName } from '../../oci/layout/fs.js';
import type { Store } from '../../store/index.js';
import { ownerTag } from '../../store/owner.js';

type Producer = (out: Writable) => Promise<void>;

/**
 * Runs `produce` into a bridge stream piped to `dest`, so the producer never sees `dest` fail: if
 * `dest` errors (a closed pipe, a full disk), the bridge stops forwarding and drains the rest, the
 * producer finishes normally, and the error is returned. A producer whose inner streams are not
 * ready for their output being destroyed half way cannot crash the process this way.
 */
async function produceInto(dest: Writable, produce: Producer): Promise<Error | undefined> {
  const bridge = new PassThrough();
  let failure: Error | undefined;
  const onError = (err: Error): void => {
    if (failure) return;
    failure = err;
    bridge.unpipe(dest);
    bridge.resume();
  };
  dest.on('error', onError);
  bridge.pipe(dest, { end: false });
  try {
    await produce(bridge);
    if (!bridge.writableEnded) bridge.end();
    await finished(bridge);
    if (!failure) await new Promise<void>((resolve) => dest.write('', () => resolve()));
  } finally {
    bridge.unpipe(dest);
    dest.off('error', onError);
  }
  return failure;
}

/**
 * Streams what `produce` writes to standard output. A reader that goes away (`kiln save | head`)
 * ends the command quietly, as it would any Unix filter.
 */
export async function writeToStdout(produce: Producer): Promise<void> {
  const failure = await produceInto(process.stdout, produce);
  if (failure && (failure as NodeJS.ErrnoException).code !== 'EPIPE') throw failure;
}

/**
 * Writes `path` so that it appears complete or not at all: the content goes to a temp file beside
 * it, is flushed to disk, and is renamed into place; a failure removes the temp file. A path that
 * is not a regular file (a device, a FIFO: `-o /dev/stdout`) is written in place, never replaced.
 */
export async function writeFileAtomically(path: string, produce: Producer): Promise<void> {
  const target = resolve(path);
  const existing = await fsp.stat(target).catch(() => undefined);
  if (existing && !existing.isFile()) {
    if (existing.isDirectory()) throw new InputFileError(path, 'is a directory');
    const out = createWriteStream(target, { flags: 'w' });
    let failure = await produceInto(out, produce);
    out.end();
    try {
      await finished(out);
    } catch (err) {
      failure ??= err as Error;
    }
    if (failure) throw new InputFileError(path, `cannot write: ${failure.message}`, { cause: failure });
    return;
  }
  const dir = dirname(target);
  try {
    const st = await fsp.stat(dir);
    if (!st.isDirectory()) throw new InputFileError(path, 'the parent is not a directory');
  } catch (err) {
    if (err instanceof InputFileError) throw err;
    throw new InputFileError(path, 'cannot write here: the directory does not exist', { cause: err });
  }
  const tmp = join(dir, `.${basename(target)}.${tempName(String(process.pid), '.tmp')}`);
  const out = createWriteStream(tmp, { flags: 'wx', mode: 0o644, flush: true });
  try {
    const failure = await produceInto(out, produce);
    if (failure) throw new InputFileError(path, `cannot write: ${failure.message}`, { cause: failure });
    out.end();
    await finished(out);
    await fsp.rename(tmp, target);
  } catch (err) {
    out.destroy();
    await fsp.rm(tmp, { force: true });
    throw err;
  }
}

/**
 * A private work directory inside the store's temp dir, named after this process: if the process
 * is killed, the next `kiln prune` sees that its owner is gone and removes it.
 */
export async function withStoreWorkDir<T>(store: Store, label: string, fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = join(store.tmpDir, tempName(ownerTag(), `.${label}`));
  await fsp.mkdir(dir, { recursive: true, mode: 0o700 });
  try {
    return await fn(dir);
  } finally {
    await fsp.rm(dir, { recursive: true, force: true });
  }
}

/** The file a command reads, checked up front so a typo is one clear line rather than a stream error. */
export async function checkInputFile(path: string): Promise<void> {
  let st;
  try {
    st = await fsp.stat(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new InputFileError(path, code === 'ENOENT' ? 'no such file or directory' : `cannot read: ${String(code ?? err)}`, { cause: err });
  }
  if (st.isDirectory()) throw new InputFileError(path, 'is a directory');
}
