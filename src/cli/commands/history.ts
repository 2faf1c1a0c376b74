/** `kiln history` (also `kiln image history`): the layers and steps an image was made of. */
import { Option, type Command } from 'commander';
import { UsageError } from '../../errors.js';
import { storeRoot } from './global.js';

export function configureHistory(cmd: Command): Command {
  return cmd
    .description('Show the history of an image, or with --build the recent builds')
    .argument('[image]', 'image name or ID')
    .option('--build', 'list recent builds (id, when, target, outcome, duration, steps cached)')
    .addOption(
      new Option('-H, --human [bool]', 'print sizes and dates in human readable format (--human=false for raw values)')
        .default(true)
        .argParser((v: string) => !/^(false|0|no)$/i.test(v)),
    )
    .option('--format <format>', "'table', 'table TEMPLATE', 'json' (one object per line) or a Go TEMPLATE")
    .option('--no-trunc', "don't truncate output")
    .option('-q, --quiet', 'only show image IDs')
    .action(async (ref: string | undefined, options, command: Command) => {
      if (options.build) {
        if (ref !== undefined) throw new UsageError('history --build takes no image argument');
        const { runBuildHistory } = await import('../build-history.js');
        process.exitCode = await runBuildHistory(storeRoot(command), { quiet: options.quiet, ...(options.format ? { format: options.format } : {}) });
        return;
      }
      if (ref === undefined) throw new UsageError('history needs an image name or ID (or --build for the recent builds)');
      const { runHistory } = await import('../image/history.js');
      await runHistory(storeRoot(command), ref, options);
    });
}

export function registerHistory(program: Command): void {
  configureHistory(program.command('history'));
}
