/**
 * `kiln check` and `kiln build --check`: BuildKit's build checks, decided from the Dockerfile alone.
 */
import type { Command } from 'commander';
import { collectKeyValue } from '../options.js';

export interface CheckOptions {
  file?: string;
  buildArg: Record<string, string>;
  target?: string;
}

export function registerCheck(program: Command): void {
  program
    .command('check')
    .description("Report the Dockerfile's build-check warnings (as `docker build --check`)")
    .argument('[context]', 'build context directory', '.')
    .option('-f, --file <path>', "Dockerfile path ('-' reads standard input)")
    .option('--build-arg <key=value>', 'set a build-time variable (repeatable)', collectKeyValue('--build-arg'), {})
    .option('--target <stage>', 'check only the stages the target needs')
    .action(async (context: string, options: CheckOptions) => {
      const { runCheck } = await import('../check.js');
      process.exitCode = await runCheck(context, options);
    });
}
