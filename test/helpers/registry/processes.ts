/**
 * Child processes and temp dirs the registry helpers create, and their cleanup. A registry left
 * running after a test run holds a port and a temp dir and can confuse the next run, so every
 * child is killed on `stop()`, again when this process exits (however a test file ends), and —
 * because an `exit` handler never runs when the test worker is SIGKILLed — each is also started
 * under `setpriv --pdeathsig KILL`, which makes the kernel kill it when its parent dies. Temp dirs
 * go with `stop()` or at exit; those a SIGKILLed process left are swept by the next start.
 */
import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { findExecutable } from './debian.js';

const live = new Set<ChildProcess>();
const tempDirs = new Set<string>();
let exitHookInstalled = false;
const OWNER_FILE = 'owner.pid';

function cleanupSync(): void {
  for (const child of live) {
    try {
      child.kill('SIGKILL');
    } catch {
      // already gone
    }
  }
  live.clear();
  for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
  tempDirs.clear();
}

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  // Only 'exit': adding SIGINT/SIGTERM listeners would replace Node's default of exiting on them.
  process.once('exit', cleanupSync);
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Marks `dir` as this process's, to be removed when it exits. The owner file lets a later run
 * remove what a SIGKILLed run had to leave behind (see sweepStaleTempDirs).
 */
export function ownTempDir(dir: string): void {
  installExitHook();
  writeFileSync(join(dir, OWNER_FILE), String(process.pid));
  tempDirs.add(dir);
}

export function releaseTempDir(dir: string): void {
  tempDirs.delete(dir);
}

/** Removes `<parent>/<prefix>*` dirs whose owning process is gone. Dirs without an owner file are left alone. */
export function sweepStaleTempDirs(parent: string, prefix: string): void {
  let names: string[];
  try {
    names = readdirSync(parent).filter((n) => n.startsWith(prefix));
  } catch {
    return;
  }
  for (const name of names) {
    const dir = join(parent, name);
    let owner: number;
    try {
      owner = Number(readFileSync(join(dir, OWNER_FILE), 'utf8'));
    } catch {
      continue;
    }
    if (Number.isInteger(owner) && owner > 0 && owner !== process.pid && !processAlive(owner)) {
      rmSync(dir, { recursive: true, force: true });
    }
  }
}

/** Spawns `command` so that it cannot outlive this process; see the module comment. */
export function spawnOwned(command: string, args: string[], options: SpawnOptions): ChildProcess {
  installExitHook();
  const setpriv = findExecutable('setpriv');
  // setpriv execs the command, so the pid we hold is the command's own.
  const child = setpriv
    ? spawn(setpriv, ['--pdeathsig', 'KILL', '--', command, ...args], options)
    : spawn(command, args, options);
  live.add(child);
  child.once('exit', () => live.delete(child));
  child.once('error', () => live.delete(child));
  return child;
}

/** Stops a child: SIGTERM, then SIGKILL if it has not exited within `graceMs`. Resolves once it is gone. */
export async function stopChild(child: ChildProcess, graceMs = 3000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) {
    live.delete(child);
    return;
  }
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
  try {
    await exited;
  } finally {
    clearTimeout(timer);
    live.delete(child);
  }
}
