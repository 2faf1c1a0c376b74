/** `kiln doctor`: can this host run build steps, with what isolation, and how to fix what is missing. */
import type { Command } from 'commander';

export interface DoctorOptions {
  json?: boolean;
}

export function registerDoctor(program: Command): void {
  program
    .command('doctor')
    .description('Check what this host supports for build sandboxes (user namespaces, subuid ranges, overlay, cgroups)')
    .option('--json', 'print the report as JSON')
    .action(async (options: DoctorOptions) => {
      const { runDoctor } = await import('../doctor.js');
      process.exitCode = await runDoctor(options);
    });
}
