/** Temp stores and CLI runs against them, for tests that drive the image commands as a user would. */
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { promises as fsp, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { REPO_ROOT } from '../conformance/harness.js';
import { KILN_BIN, kiln, type RunResult } from './kiln.js';

export interface TempDir {
  dir: string;
  cleanup(): Promise<void>;
}

export async function tempDir(prefix = 'kiln-test-'): Promise<TempDir> {
  const dir = await fsp.mkdtemp(join(tmpdir(), prefix));
  return { dir, cleanup: () => fsp.rm(dir, { recursive: true, force: true }) };
}

/** `kiln --root ROOT ARGS...` with text output. */
export function kilnAt(root: string, args: string[], options: { input?: string; env?: NodeJS.ProcessEnv } = {}): RunResult {
  return kiln(['--root', root, ...args], options);
}

export interface BufferResult {
  status: number | null;
  stdout: Buffer;
  stderr: string;
}

/** `kiln --root ROOT ARGS...` with binary standard input and output (archives). */
export function kilnBinary(root: string, args: string[], options: { input?: Buffer; env?: NodeJS.ProcessEnv } = {}): BufferResult {
  const r = spawnSync(process.execPath, [KILN_BIN, '--root', root, ...args], {
    cwd: REPO_ROOT,
    input: options.input,
    env: options.env ?? process.env,
    maxBuffer: 1 << 30,
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr.toString('utf8') };
}

/** Starts `kiln --root ROOT ARGS...` without waiting (to stop it half way). */
export function spawnKiln(root: string, args: string[], options: { env?: NodeJS.ProcessEnv } = {}): ChildProcess {
  return spawn(process.execPath, [KILN_BIN, '--root', root, ...args], { cwd: REPO_ROOT, env: options.env ?? process.env, stdio: ['pipe', 'pipe', 'pipe'] });
}

/** `kiln --root ROOT ARGS...` without blocking the event loop (to run beside a spawned kiln). */
export function kilnAsync(root: string, args: string[]): Promise<RunResult> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [KILN_BIN, '--root', root, ...args], { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.once('close', (status) => resolve({ status, stdout, stderr }));
  });
}

/** Runs skopeo; a missing skopeo fails naming the Debian package. */
export function skopeo(...args: string[]): string {
  try {
    return execFileSync('skopeo', args, { encoding: 'utf8', maxBuffer: 64 << 20, stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new Error('skopeo is not installed; these tests need it: apt-get install -y skopeo (Debian package "skopeo")');
    }
    throw new Error(`skopeo ${args.join(' ')} failed: ${String((err as { stderr?: string }).stderr ?? err)}`);
  }
}

/** Names in a store directory (empty when it does not exist). */
export function entries(dir: string): string[] {
  try {
    return readdirSync(dir).sort();
  } catch {
    return [];
  }
}

/** The parts of a store that say what it holds: index.json entries, blobs, leases, temp files. */
export async function storeState(root: string): Promise<{ index: unknown; blobs: string[]; leases: string[]; tmp: string[] }> {
  let index: unknown;
  try {
    index = JSON.parse(await fsp.readFile(join(root, 'index.json'), 'utf8'));
  } catch {
    index = undefined;
  }
  return { index, blobs: entries(join(root, 'blobs', 'sha256')), leases: entries(join(root, 'leases')), tmp: entries(join(root, 'tmp')) };
}
