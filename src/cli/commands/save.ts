/** `kiln save` (also `kiln image save`): images to a docker-archive or OCI archive tar. */
import type { Command } from 'commander';
import { storeRoot } from './global.js';

export function configureSave(cmd: Command): Command {
  return cmd
    .description('Save one or more images to a tar archive (streamed to STDOUT by default)')
    .argument('<image...>', 'image names or IDs (a repository without a tag saves all its tags)')
    .option('-o, --output <file>', 'write to a file instead of STDOUT')
    .option('--format <format>', 'archive format: docker (docker-archive, as `docker save`) or oci (OCI image layout tar)', 'docker')
    .option('--compression <kind>', 'with --format oci: compress layers stored uncompressed (gzip, zstd); default none keeps every digest')
    .option('--platform <platform>', 'for a multi-platform image, save this platform (default: the host)')
    .action(async (refs: string[], options, command: Command) => {
      const { runSave } = await import('../image/archive.js');
      await runSave(storeRoot(command), refs, options);
    });
}

export function registerSave(program: Command): void {
  configureSave(program.command('save'));
}
