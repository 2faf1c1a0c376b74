/** `kiln images` (also `kiln image ls`): list the stored images as `docker images` does. */
import type { Command } from 'commander';
import { collectList } from '../options.js';
import { storeRoot } from './global.js';

export function configureImages(cmd: Command): Command {
  return cmd
    .description('List images')
    .argument('[reference]', 'show only images matching REPOSITORY[:TAG] (wildcards as in --filter reference=)')
    .option('-a, --all', 'show all images (kiln keeps no intermediate images, so the list is the same)')
    .option('--digests', 'show digests')
    .option('-f, --filter <filter>', 'filter output: dangling=true|false, reference=PATTERN, label=KEY[=VALUE], before=IMAGE, since=IMAGE', collectList)
    .option('--format <format>', "'table', 'table TEMPLATE', 'json' (one object per line) or a Go TEMPLATE")
    .option('--no-trunc', "don't truncate output")
    .option('-q, --quiet', 'only show image IDs')
    .action(async (reference: string | undefined, options, command: Command) => {
      const { runImages } = await import('../image/list.js');
      await runImages(storeRoot(command), reference, options);
    });
}

export function registerImages(program: Command): void {
  configureImages(program.command('images'));
}
