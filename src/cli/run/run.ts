/**
 * `kiln run` and `kiln create`. Both resolve the image in the store and make the container record;
 * `run` then starts it: in the foreground kiln is the container's monitor (its output on kiln's
 * stdout and stderr, SIGINT/SIGTERM passed to it, its exit status kiln's), with `-d` a detached
 * monitor takes over and kiln prints the container ID.
 */
import type { ContainerFlags } from '../../run/spec.js';
import type { ContainerRecord } from '../../run/containers.js';
import type { Store } from '../../store/index.js';
import { KilnError } from '../../errors.js';
import { openStoreForCommand } from '../store.js';
import { displayRef } from '../image/names.js';

export type RunFlags = ContainerFlags & { detach?: boolean; pull?: string; quiet?: boolean };

/** kiln's own failures before the container runs exit with 125, as docker's do. */
function asRunError(err: unknown): unknown {
  if (err instanceof KilnError && err.exitCode === 1) return new KilnError(err.code, err.message, { exitCode: 125, ...(err.hint ? { hint: err.hint } : {}), cause: err });
  return err;
}

async function create(root: string, imageRef: string, command: string[], flags: RunFlags): Promise<{ store: Store; record: ContainerRecord }> {
  const { findRunImage, parsePullPolicy } = await import('./pull.js');
  const pull = parsePullPolicy(flags.pull);
  const store = await openStoreForCommand(root, { namespace: true });
  const image = await findRunImage(store, imageRef, { pull, ...(flags.quiet ? { quiet: true } : {}) });
  if (!image.config) throw new KilnError('IMAGE', `${displayRef(imageRef)} is not a runnable image${image.problem ? `: ${image.problem.message}` : ''}`, { exitCode: 125 });
  const { createContainer } = await import('../../run/lifecycle.js');
  const { record, warnings } = await createContainer({
    storeRoot: store.root,
    imageRef,
    imageDigest: image.record.digest,
    imageId: image.id,
    imageConfig: image.config,
    command,
    flags,
  });
  for (const w of warnings) process.stderr.write(`WARNING: ${w}\n`);
  return { store, record };
}

export async function createOnly(root: string, imageRef: string, command: string[], flags: RunFlags): Promise<void> {
  try {
    const { record } = await create(root, imageRef, command, flags);
    process.stdout.write(`${record.id}\n`);
  } catch (err) {
    throw asRunError(err);
  }
}

export async function runContainer(root: string, imageRef: string, command: string[], flags: RunFlags): Promise<number> {
  let created;
  try {
    created = await create(root, imageRef, command, flags);
  } catch (err) {
    throw asRunError(err);
  }
  const { store, record } = created;
  if (flags.detach) {
    const { startDetached } = await import('../../run/lifecycle.js');
    await startDetached(store.root, record);
    process.stdout.write(`${record.id}\n`);
    return 0;
  }
  return runAttached(store, record, { interactive: Boolean(flags.interactive) });
}

/**
 * Runs a created (or stopped) container in the foreground with kiln as its monitor: its output on
 * kiln's, SIGINT/SIGTERM passed on, its exit status answered. With `interactive` kiln's stdin goes
 * to it (if it was created with -i): the terminal itself for a -t container when stdin is one.
 */
export async function runAttached(store: Store, record: ContainerRecord, options: { interactive: boolean }): Promise<number> {
  const { superviseContainer } = await import('../../run/monitor.js');
  const interactive = options.interactive && record.config.openStdin;
  const terminal = Boolean(record.config.tty && interactive && process.stdin.isTTY);
  const piped = !terminal && interactive;
  try {
    return await superviseContainer(store, record, {
      ...(terminal ? { stdinInherit: true } : piped ? { stdin: process.stdin } : {}),
      stdout: process.stdout,
      stderr: process.stderr,
      forwardSignals: true,
    });
  } finally {
    // A terminal on stdin would keep kiln waiting for input the container no longer reads.
    if (piped) {
      process.stdin.unpipe();
      process.stdin.destroy();
    }
  }
}
