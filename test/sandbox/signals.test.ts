/**
 * Signals reaching kiln while a step runs: SIGTERM (and Ctrl-C's SIGINT) cancel the step, and even
 * SIGKILL, which kiln cannot handle, leaves no sandbox process behind. As root and rootless.
 */
import { spawn } from 'node:child_process';
import { chownSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { REPO_ROOT } from '../conformance/harness.js';
import { busyboxTar } from '../helpers/busybox.js';
import { userNamespaceBlocker } from '../../src/sandbox/userns.js';
import { ensurePackages, ensureUsers } from './users.js';
import { execFileSync } from 'node:child_process';

const blocker = userNamespaceBlocker();
const describeSandbox = blocker ? describe.skip : describe;

/** Processes whose command line holds `marker` (the step's sleeps). */
function survivors(marker: string): string[] {
  const out: string[] = [];
  for (const pid of readdirSync('/proc').filter((n) => /^\d+$/.test(n))) {
    try {
      const cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ');
      if (cmd.includes(`sleep ${marker}`) && !cmd.includes('signal-child')) out.push(`${pid}: ${cmd}`);
    } catch {
      // gone
    }
  }
  return out;
}

async function waitFor(check: () => boolean, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (check()) return true;
    await new Promise((r) => setTimeout(r, 50));
  }
  return check();
}

describeSandbox('signals during a RUN step', () => {
  const dirs: string[] = [];
  let user: string;
  beforeAll(async () => {
    ensurePackages();
    user = ensureUsers().user;
    await busyboxTar();
  });
  afterAll(() => {
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  const start = (as: 'root' | 'rootless', marker: string) => {
    const dir = mkdtempSync(join(tmpdir(), 'kiln-sig-'));
    dirs.push(dir);
    const node = [process.execPath, '--import', 'tsx', join(REPO_ROOT, 'test/sandbox/signal-child.ts'), join(dir, 'w'), marker];
    if (as === 'rootless') chownSync(dir, Number(execFileSync('id', ['-u', user]).toString()), Number(execFileSync('id', ['-g', user]).toString()));
    // runuser stays in between as the parent; the signal goes to kiln itself.
    const argv = as === 'rootless' ? ['runuser', '-u', user, '--', ...node] : node;
    const child = spawn(argv[0]!, argv.slice(1), { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const closed = new Promise<number | null>((r) => child.on('close', (code) => r(code)));
    const started = waitFor(() => /started (\d+)/.test(out), 60_000).then(() => Number(/started (\d+)/.exec(out)?.[1]));
    return { started, closed, output: () => out + err };
  };

  for (const as of ['root', 'rootless'] as const) {
    it(`SIGTERM cancels the step and kills its processes (${as})`, async () => {
      const marker = String(200000 + Math.floor(Math.random() * 700000));
      const run = start(as, marker);
      const pid = await run.started;
      expect(pid, run.output()).toBeGreaterThan(0);
      expect(survivors(marker).length).toBeGreaterThan(0);
      process.kill(pid, 'SIGTERM');
      const code = await run.closed;
      expect(run.output()).toContain('ABORTED');
      expect(code).toBe(130);
      expect(await waitFor(() => survivors(marker).length === 0, 5000), survivors(marker).join('\n')).toBe(true);
    }, 120_000);

    it(`SIGKILL of kiln still takes the sandbox down (${as})`, async () => {
      const marker = String(200000 + Math.floor(Math.random() * 700000));
      const run = start(as, marker);
      const pid = await run.started;
      expect(pid, run.output()).toBeGreaterThan(0);
      process.kill(pid, 'SIGKILL');
      await run.closed;
      expect(await waitFor(() => survivors(marker).length === 0, 5000), survivors(marker).join('\n')).toBe(true);
    }, 120_000);
  }
});
