/** `kiln logs`: a container's output (`--build`: a build's step logs). */
import type { Command } from 'commander';
import { storeRoot } from './global.js';

export function registerLogs(program: Command): void {
  program
    .command('logs')
    .description("Fetch the logs of a container (or, with --build, of a build's steps)")
    .argument('[container]', 'container name or ID (with --build: the build ID, default the last build)')
    .argument('[step]', 'with --build: the step whose log to show')
    .option('-f, --follow', 'follow log output')
    .option('-n, --tail <n>', 'number of lines to show from the end of the logs (default all)')
    .option('-t, --timestamps', 'show timestamps')
    .option('--build', 'show the logs of a build instead of a container')
    .action(async (target: string | undefined, step: string | undefined, options, cmd: Command) => {
      if (options.build) {
        const { showBuildLogs } = await import('../build-logs.js');
        process.exitCode = await showBuildLogs(storeRoot(cmd), target, step, { follow: options.follow });
        return;
      }
      const { runLogs } = await import('../run/manage.js');
      await runLogs(storeRoot(cmd), target, options);
    });
}
