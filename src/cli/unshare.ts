/** `kiln unshare`: runs the command in kiln's user namespace (directly when already root). */
import { spawn } from 'node:child_process';
import { constants } from 'node:os';
import { UsageError } from '../errors.js';
import { currentNamespace, runInNamespace } from '../sandbox/userns.js';

export async function runUnshare(command: string[], root: string): Promise<number> {
  const argv = command.length ? command : [process.env.SHELL || '/bin/sh'];
  const env = { ...process.env, KILN_ROOT: root };
  if (!currentNamespace()) return runInNamespace(argv, { env });
  // Already root (real, or in a namespace): nothing to enter.
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0]!, argv.slice(1), { stdio: 'inherit', env });
    child.once('error', (err) => reject(new UsageError(`cannot run ${argv[0]}: ${err.message}`)));
    child.once('exit', (code, signal) => resolve(code ?? 128 + (signal ? (constants.signals[signal] ?? 0) : 0)));
  });
}
