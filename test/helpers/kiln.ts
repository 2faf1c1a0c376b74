/** Runs the compiled `kiln` CLI as a user would, capturing its output and exit status. */
import { spawnSync, type SpawnSyncOptions } from 'node:child_process';
import { join } from 'node:path';
import { REPO_ROOT } from '../conformance/harness.js';

export const KILN_BIN = join(REPO_ROOT, 'bin/kiln.js');

export interface RunResult {
  status: number | null;
  stdout: string;
  stderr: string;
}

export function kiln(args: string[], options: SpawnSyncOptions & { input?: string } = {}): RunResult {
  const r = spawnSync(process.execPath, [KILN_BIN, ...args], { encoding: 'utf8', cwd: REPO_ROOT, ...options });
  return { status: r.status, stdout: String(r.stdout ?? ''), stderr: String(r.stderr ?? '') };
}
