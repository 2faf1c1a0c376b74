/** Questions the prune commands ask before removing anything, answered as docker's are. */
import { createInterface } from 'node:readline';
import { KilnError } from '../errors.js';

/** docker's `[y/N]` prompt: only `y` or `Y` (after trimming) agrees; end of input declines. */
export async function confirm(question: string): Promise<boolean> {
  process.stdout.write(`${question} [y/N] `);
  const rl = createInterface({ input: process.stdin, terminal: false });
  const answer = await new Promise<string>((resolve) => {
    rl.once('line', resolve);
    rl.once('close', () => resolve(''));
  });
  rl.close();
  if (!process.stdin.isTTY) process.stdout.write('\n');
  return answer.trim().toLowerCase() === 'y';
}

/** A prune declined at the prompt (`image prune has been cancelled`). */
export class PruneCancelledError extends KilnError {
  constructor(what: string) {
    super('CANCELLED', `${what} prune has been cancelled`);
  }
}
