/** `kiln logout`: remove saved credentials for a registry. */
import type { Command } from 'commander';

export interface LogoutCommandOptions {
  authfile?: string;
}

export function registerLogout(program: Command): void {
  program
    .command('logout')
    .description('Log out from a registry')
    .argument('[server]', 'registry host (default: docker.io)')
    .option('--authfile <path>', 'remove from this containers-auth.json file instead of docker config (default: $REGISTRY_AUTH_FILE)')
    .action(async (server: string | undefined, options: LogoutCommandOptions) => {
      const { runLogout } = await import('../registry/login.js');
      await runLogout(server, options);
    });
}
