/** `kiln import` (also `kiln image import`): a root filesystem tar becomes an image. */
import type { Command } from 'commander';
import { storeRoot } from './global.js';

export function configureImport(cmd: Command): Command {
  return cmd
    .description('Import the contents from a tarball to create a filesystem image')
    .argument('<file>', "root filesystem tar (plain or compressed), or '-' for STDIN")
    .argument('[reference]', 'REPOSITORY[:TAG] to name the image')
    .option('-m, --message <message>', 'set the commit message (history comment) for the imported image')
    .option('--platform <platform>', 'set the platform of the image (default: the host, e.g. linux/amd64)')
    .action(async (file: string, reference: string | undefined, options, command: Command) => {
      const { runImport } = await import('../image/import.js');
      await runImport(storeRoot(command), file, reference, options);
    });
}

export function registerImport(program: Command): void {
  configureImport(program.command('import'));
}
