/** `kiln login`: check credentials against a registry and save them as docker does. */
import type { Command } from 'commander';
import { collectList } from '../options.js';

export interface LoginCommandOptions {
  username?: string;
  password?: string;
  passwordStdin?: boolean;
  insecureRegistry: string[];
  authfile?: string;
}

export function registerLogin(program: Command): void {
  program
    .command('login')
    .description('Log in to a registry')
    .argument('[server]', 'registry host (default: docker.io)')
    .option('-u, --username <username>', 'username')
    .option('-p, --password <password>', 'password (visible to other users of this machine; prefer --password-stdin)')
    .option('--password-stdin', 'read the password from standard input')
    .option('--insecure-registry <host>', 'allow plain HTTP for this registry (repeatable; loopback always may)', collectList, [])
    .option('--authfile <path>', 'write to this containers-auth.json file instead of docker config (default: $REGISTRY_AUTH_FILE)')
    .action(async (server: string | undefined, options: LoginCommandOptions) => {
      const { runLogin } = await import('../registry/login.js');
      await runLogin(server, options);
    });
}
