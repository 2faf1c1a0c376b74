/** Where the store lives when no `--root` is given. */
import { readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { isAbsolute, join, resolve } from 'node:path';

/** True for root in the initial user namespace (not root inside a rootless user namespace). */
export function isRealRoot(): boolean {
  if (process.geteuid?.() !== 0) return false;
  try {
    const map = readFileSync('/proc/self/uid_map', 'utf8').trim().split(/\s+/);
    return map[0] === '0' && map[1] === '0' && map[2] === '4294967295';
  } catch {
    return true;
  }
}

/**
 * `$KILN_ROOT`, else `/var/lib/kiln` for real root, else `$XDG_DATA_HOME/kiln` (default
 * `~/.local/share/kiln`). A rootless kiln re-executed inside its user namespace is uid 0 there but
 * keeps the user's directory, since that is where its store was created.
 */
export function defaultStoreRoot(env: NodeJS.ProcessEnv = process.env): string {
  if (env.KILN_ROOT) return resolve(env.KILN_ROOT);
  if (isRealRoot()) return '/var/lib/kiln';
  const xdg = env.XDG_DATA_HOME;
  const base = xdg && isAbsolute(xdg) ? xdg : join(env.HOME || homedir(), '.local', 'share');
  return join(base, 'kiln');
}
