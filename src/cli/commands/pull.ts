/** `kiln pull`: download an image from a registry into the store. */
import type { Command } from 'commander';
import { collectList } from '../options.js';
import { storeRoot } from './global.js';

export interface PullCommandOptions {
  platform?: string;
  quiet?: boolean;
  insecureRegistry: string[];
  authfile?: string;
}

export function registerPull(program: Command): void {
  program
    .command('pull')
    .description('Download an image from a registry')
    .argument('<name>', 'NAME[:TAG|@DIGEST]')
    .option('--platform <platform>', 'pull this platform of a multi-platform image (default: this host)')
    .option('-q, --quiet', 'print only the image name')
    .option('--insecure-registry <host>', 'allow plain HTTP for this registry (repeatable; loopback always may)', collectList, [])
    .option('--authfile <path>', 'credentials file in containers-auth.json format (default: $REGISTRY_AUTH_FILE, then docker config)')
    .action(async (name: string, options: PullCommandOptions, command: Command) => {
      const { runPull } = await import('../registry/pull.js');
      await runPull(storeRoot(command), name, options);
    });
}
