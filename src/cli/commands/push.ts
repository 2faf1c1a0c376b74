/** `kiln push`: upload an image from the store to a registry. */
import type { Command } from 'commander';
import { collectList } from '../options.js';
import { storeRoot } from './global.js';

export interface PushCommandOptions {
  quiet?: boolean;
  insecureRegistry: string[];
  authfile?: string;
}

export function registerPush(program: Command): void {
  program
    .command('push')
    .description('Upload an image to a registry')
    .argument('<name>', 'NAME[:TAG] of an image in the store')
    .option('-q, --quiet', 'print only the pushed digest line')
    .option('--insecure-registry <host>', 'allow plain HTTP for this registry (repeatable; loopback always may)', collectList, [])
    .option('--authfile <path>', 'credentials file in containers-auth.json format (default: $REGISTRY_AUTH_FILE, then docker config)')
    .action(async (name: string, options: PushCommandOptions, command: Command) => {
      const { runPush } = await import('../registry/push.js');
      await runPush(storeRoot(command), name, options);
    });
}
