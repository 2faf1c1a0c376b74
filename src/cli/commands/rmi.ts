/** `kiln rmi` (also `kiln image rm`): remove names, and images left without one. */
import type { Command } from 'commander';
import { storeRoot } from './global.js';

export function configureRmi(cmd: Command): Command {
  return cmd
    .description('Remove one or more images')
    .argument('<image...>', 'image names or IDs')
    .option('-f, --force', 'remove an image by ID even when several names refer to it')
    .option('--no-prune', "don't reclaim the removed images' content now (the next `kiln prune` does)")
    .action(async (refs: string[], options, command: Command) => {
      const { runRmi } = await import('../image/remove.js');
      await runRmi(storeRoot(command), refs, options);
    });
}

export function registerRmi(program: Command): void {
  configureRmi(program.command('rmi'));
}
