/** `kiln tag` (also `kiln image tag`): give an image another name. */
import type { Command } from 'commander';
import { storeRoot } from './global.js';

export function configureTag(cmd: Command): Command {
  return cmd
    .description('Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE')
    .argument('<source>', 'SOURCE_IMAGE[:TAG], or an image ID')
    .argument('<target>', 'TARGET_IMAGE[:TAG]')
    .action(async (source: string, target: string, _options, command: Command) => {
      const { runTag } = await import('../image/remove.js');
      await runTag(storeRoot(command), source, target);
    });
}

export function registerTag(program: Command): void {
  configureTag(program.command('tag'));
}
