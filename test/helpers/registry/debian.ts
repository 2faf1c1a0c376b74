/**
 * Makes sure a Debian package the registry tests depend on is present. A test that quietly skips
 * when its tool is missing proves nothing, so the package is installed when we are root and can,
 * and otherwise the failure names the package to install.
 */
import { spawnSync } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { delimiter, isAbsolute, join } from 'node:path';

/** Finds `binary` (an absolute path, or a name looked up on PATH); returns its path or undefined. */
export function findExecutable(binary: string): string | undefined {
  const candidates = isAbsolute(binary)
    ? [binary]
    : (process.env.PATH ?? '/usr/local/bin:/usr/bin:/bin')
        .split(delimiter)
        .concat(['/usr/sbin', '/sbin'])
        .filter(Boolean)
        .map((dir) => join(dir, binary));
  for (const path of candidates) {
    try {
      accessSync(path, constants.X_OK);
      return path;
    } catch {
      // not here; try the next directory
    }
  }
  return undefined;
}

function aptGet(args: string[]): { ok: boolean; output: string } {
  const r = spawnSync(
    'apt-get',
    // The lock timeout lets parallel test files that need packages wait for each other instead of failing.
    ['-o', 'DPkg::Lock::Timeout=600', '-o', 'Acquire::Retries=3', ...args],
    {
      encoding: 'utf8',
      env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
      stdio: ['ignore', 'pipe', 'pipe'],
      timeout: 15 * 60_000,
    },
  );
  return { ok: r.status === 0, output: `${r.stdout ?? ''}${r.stderr ?? ''}${r.error ? String(r.error) : ''}` };
}

/**
 * Ensures `binary` (from Debian package `pkg`) is installed. As root, a missing package is installed
 * with apt-get (refreshing the package lists only if the first attempt fails, since that is slow);
 * otherwise this throws an error naming the package.
 */
export function requireDebianPackage(pkg: string, binary: string): void {
  if (findExecutable(binary)) return;
  const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
  if (!isRoot || !findExecutable('apt-get')) {
    throw new Error(
      `the Debian package "${pkg}" (for ${binary}) is required by this test; install it with: sudo apt-get install ${pkg}`,
    );
  }
  let r = aptGet(['install', '-y', '-q', pkg]);
  if (!r.ok) {
    const update = aptGet(['update', '-q']);
    if (!update.ok) throw new Error(`apt-get update failed while installing "${pkg}":\n${update.output}`);
    r = aptGet(['install', '-y', '-q', pkg]);
  }
  if (!r.ok) throw new Error(`apt-get install ${pkg} failed:\n${r.output}`);
  if (!findExecutable(binary)) {
    throw new Error(`installed the Debian package "${pkg}" but ${binary} is still missing`);
  }
}
