/** `kiln exec`: runs a command in a running container; its exit status is kiln's. */
import { spawn } from 'node:child_process';
import { constants as osConstants } from 'node:os';
import { KilnError } from '../../errors.js';
import { ContainerStore } from '../../run/containers.js';
import { planExec, type ExecOptions } from '../../run/exec.js';

export async function runExec(root: string, ref: string, command: string[], options: ExecOptions): Promise<number> {
  const rec = await ContainerStore.open(root).find(ref);
  const plan = await planExec(root, rec, command, options);
  const child = spawn(plan.argv[0]!, plan.argv.slice(1), {
    stdio: [plan.stdin, 'inherit', 'inherit'],
    env: { PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', SHELL: '/bin/sh' },
  });
  const forward = (sig: NodeJS.Signals) => () => {
    // A terminal's Ctrl-C reaches the command itself (same process group).
    if (sig === 'SIGINT' && process.stdin.isTTY) return;
    child.kill(sig);
  };
  const handlers = (['SIGINT', 'SIGTERM', 'SIGHUP'] as const).map((s) => [s, forward(s)] as const);
  for (const [s, h] of handlers) process.on(s, h);
  try {
    return await new Promise<number>((resolve, reject) => {
      child.once('error', (err) => reject(new KilnError('EXEC', `cannot run nsenter: ${err.message}`, { exitCode: 126 })));
      child.once('close', (code, signal) => resolve(code ?? 128 + (signal ? (osConstants.signals[signal] ?? 0) : 0)));
    });
  } finally {
    for (const [s, h] of handlers) process.off(s, h);
  }
}
