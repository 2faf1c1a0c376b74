/**
 * `kiln unshare [COMMAND...]`: a shell (or COMMAND) inside kiln's user namespace, as `buildah
 * unshare` does, with KILN_ROOT set to the store. That is where the store's files have their image
 * owners, so this is how a rootless user inspects or deletes it.
 */
import type { Command } from 'commander';
import { storeRoot } from './global.js';

export function registerUnshare(program: Command): void {
  // Options after COMMAND belong to it (`kiln unshare ls -la`); commander needs positional options for that.
  program.enablePositionalOptions();
  program
    .command('unshare')
    .description("Run a command (default: a shell) inside kiln's user namespace, with KILN_ROOT set")
    .argument('[command...]', 'command and arguments')
    .passThroughOptions()
    .action(async (command: string[], _options: unknown, cmd: Command) => {
      const { runUnshare } = await import('../unshare.js');
      process.exitCode = await runUnshare(command, storeRoot(cmd));
    });
}
