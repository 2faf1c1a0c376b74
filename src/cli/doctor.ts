/** `kiln doctor`: prints the sandbox probe; exit status 0 when build steps can run (even in a degraded mode). */
import { formatReport, probeHost } from '../sandbox/doctor.js';
import type { DoctorOptions } from './commands/doctor.js';

export async function runDoctor(options: DoctorOptions): Promise<number> {
  const report = await probeHost();
  process.stdout.write(options.json ? `${JSON.stringify(report, null, 2)}\n` : formatReport(report));
  return report.canBuild ? 0 : 1;
}
