/**
 * `kiln build`. For now it runs the build checks (`--check`); building images lands with the build
 * engine, and until then `kiln build` without `--check` says so rather than pretending.
 */
import type { Command } from 'commander';
import { UsageError } from '../../errors.js';
import { collectKeyValue } from '../options.js';
import type { CheckOptions } from './check.js';

interface BuildOptions extends CheckOptions {
  check?: boolean;
}

export function registerBuild(program: Command): void {
  program
    .command('build')
    .description('Build an image from a Dockerfile (today: --check runs the build checks only)')
    .argument('[context]', 'build context directory', '.')
    .option('-f, --file <path>', "Dockerfile path ('-' reads standard input)")
    .option('--build-arg <key=value>', 'set a build-time variable (repeatable)', collectKeyValue('--build-arg'), {})
    .option('--target <stage>', 'set the target stage to build')
    .option('--check', "run the Dockerfile's build checks instead of building")
    .action(async (context: string, options: BuildOptions) => {
      if (!options.check) {
        throw new UsageError('this kiln cannot build images yet; `kiln build --check` runs the build checks');
      }
      const { runCheck } = await import('../check.js');
      process.exitCode = await runCheck(context, options);
    });
}
