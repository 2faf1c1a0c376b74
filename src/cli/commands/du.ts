/** `kiln du` (also `kiln system df`): disk usage of the store, as `docker system df`. */
import type { Command } from 'commander';
import { storeRoot } from './global.js';

export function configureDu(cmd: Command): Command {
  return cmd
    .description('Show disk usage: images, snapshots, build cache, temporary files')
    .option('-v, --verbose', 'show space usage per image')
    .option('--format <format>', "'table', 'table TEMPLATE', 'json' (one object per line) or a Go TEMPLATE")
    .action(async (options, command: Command) => {
      const { runDu } = await import('../image/du.js');
      await runDu(storeRoot(command), options);
    });
}

export function registerDu(program: Command): void {
  configureDu(program.command('du'));
}
