/** `kiln inspect` (also `kiln image inspect`): `docker image inspect`'s JSON. */
import type { Command } from 'commander';
import { storeRoot } from './global.js';

export function configureInspect(cmd: Command): Command {
  return cmd
    .description('Display detailed information on one or more images')
    .argument('<image...>', 'image names or IDs')
    .option('-f, --format <format>', "'json' (the default) or a Go TEMPLATE, e.g. '{{.Id}}'")
    .option('--platform <platform>', 'for a multi-platform image, inspect this platform (default: the host)')
    .action(async (refs: string[], options, command: Command) => {
      const { runInspect } = await import('../image/inspect.js');
      process.exitCode = await runInspect(storeRoot(command), refs, options);
    });
}

export function registerInspect(program: Command): void {
  configureInspect(program.command('inspect'));
}
