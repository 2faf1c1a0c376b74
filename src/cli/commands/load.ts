/** `kiln load` (also `kiln image load`): images from a docker-archive or OCI archive tar. */
import type { Command } from 'commander';
import { storeRoot } from './global.js';

export function configureLoad(cmd: Command): Command {
  return cmd
    .description('Load images from a tar archive (docker-archive or OCI archive) or STDIN')
    .option('-i, --input <file>', 'read from a tar archive file instead of STDIN')
    .option('-q, --quiet', 'suppress the load output (kiln prints only the loaded names)')
    .action(async (options, command: Command) => {
      const { runLoad } = await import('../image/archive.js');
      await runLoad(storeRoot(command), options);
    });
}

export function registerLoad(program: Command): void {
  configureLoad(program.command('load'));
}
