/** `kiln volume create|ls|inspect|rm|prune`: docker's volume commands, on the store's volumes. */
import type { Command } from 'commander';
import { collectList } from '../options.js';
import { storeRoot } from './global.js';

/** `--label KEY[=VALUE]`, repeatable; a bare KEY is an empty label (docker does not read the environment here). */
function collectLabel(value: string, previous: Record<string, string> = {}): Record<string, string> {
  const eq = value.indexOf('=');
  return { ...previous, [eq < 0 ? value : value.slice(0, eq)]: eq < 0 ? '' : value.slice(eq + 1) };
}

export function registerVolume(program: Command): void {
  const volume = program.command('volume').description('Manage volumes');

  volume
    .command('create')
    .description('Create a volume (a random name when none is given)')
    .argument('[name]', 'volume name')
    .option('--name <name>', 'volume name (the same as the argument)')
    .option('-d, --driver <driver>', 'volume driver (only "local")', 'local')
    .option('--label <key=value>', 'set a label on the volume (repeatable)', collectLabel, {})
    .option('-o, --opt <key=value>', 'driver options (not supported by kiln\'s local driver)', collectList)
    .action(async (name: string | undefined, options, command: Command) => {
      const { runVolumeCreate } = await import('../volume/commands.js');
      await runVolumeCreate(storeRoot(command), name, options);
    });

  volume
    .command('ls')
    .alias('list')
    .description('List volumes')
    .option('-f, --filter <filter>', 'filter output: dangling=true|false, name=NAME, label=KEY[=VALUE], driver=local', collectList)
    .option('--format <format>', "'table', 'table TEMPLATE', 'json' (one object per line) or a Go TEMPLATE")
    .option('-q, --quiet', 'only show volume names')
    .action(async (options, command: Command) => {
      const { runVolumeList } = await import('../volume/commands.js');
      await runVolumeList(storeRoot(command), options);
    });

  volume
    .command('inspect')
    .description('Show detailed information on one or more volumes')
    .argument('<volume...>', 'volume names')
    .option('-f, --format <format>', "'json' or a Go TEMPLATE")
    .action(async (names: string[], options, command: Command) => {
      const { runVolumeInspect } = await import('../volume/commands.js');
      await runVolumeInspect(storeRoot(command), names, options);
    });

  volume
    .command('rm')
    .alias('remove')
    .description('Remove one or more volumes (never one a container uses)')
    .argument('<volume...>', 'volume names')
    .option('-f, --force', 'do not fail when a volume does not exist')
    .action(async (names: string[], options, command: Command) => {
      const { runVolumeRemove } = await import('../volume/commands.js');
      await runVolumeRemove(storeRoot(command), names, options);
    });

  volume
    .command('prune')
    .description('Remove anonymous volumes no container uses (-a: every unused volume)')
    .option('-a, --all', 'remove all unused volumes, not just anonymous ones')
    .option('-f, --force', 'do not prompt for confirmation')
    .option('--filter <filter>', 'only volumes with label=KEY[=VALUE] (or label!=...)', collectList)
    .action(async (options, command: Command) => {
      const { runVolumePrune } = await import('../volume/commands.js');
      await runVolumePrune(storeRoot(command), options);
    });
}
