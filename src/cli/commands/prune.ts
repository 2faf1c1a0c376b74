/** `kiln prune` (also `kiln image prune`): remove unused images and unreferenced content. */
import type { Command } from 'commander';
import { storeRoot } from './global.js';

export function configurePrune(cmd: Command): Command {
  return cmd
    .description('Remove dangling images (-a: all images not in use) and the content nothing references')
    .option('-a, --all', 'remove all images not held by a running kiln process, not just dangling ones, and the build cache with its cache mounts')
    .option('-f, --force', 'do not prompt for confirmation')
    .action(async (options, command: Command) => {
      const { runPrune } = await import('../image/remove.js');
      await runPrune(storeRoot(command), options);
    });
}

export function registerPrune(program: Command): void {
  configurePrune(program.command('prune'));
}
