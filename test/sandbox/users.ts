/**
 * Test users for the rootless runs. Created as root with `useradd -m`, which on Debian also
 * allocates the subordinate uid/gid range; the `nosub` user has its range removed, for the
 * single-uid fallback. Also installs the Debian packages the sandbox tests rely on.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';

export const TEST_USER = 'kiln-sbx';
export const NOSUB_USER = 'kiln-sbx-nosub';

function hasUser(name: string): boolean {
  return spawnSync('id', ['-u', name]).status === 0;
}

function packageInstalled(name: string): boolean {
  const r = spawnSync('dpkg-query', ['-W', '-f=${Status}', name], { encoding: 'utf8' });
  return r.status === 0 && r.stdout.includes('install ok installed');
}

/** Installs what the sandbox tests need (root only), or explains what is missing. */
export function ensurePackages(): void {
  const wanted = ['uidmap', 'busybox-static'].filter((p) => !packageInstalled(p));
  if (!wanted.length) return;
  if (process.getuid?.() !== 0) throw new Error(`the sandbox tests need these Debian packages: apt-get install -y ${wanted.join(' ')}`);
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  execFileSync('apt-get', ['-o', 'DPkg::Lock::Timeout=600', 'update', '-qq'], { env, stdio: 'ignore' });
  execFileSync('apt-get', ['-o', 'DPkg::Lock::Timeout=600', 'install', '-y', '-qq', ...wanted], { env, stdio: 'ignore' });
}

/** Creates the test users if needed; answers their names. */
export function ensureUsers(): { user: string; nosub: string } {
  if (process.getuid?.() !== 0) {
    throw new Error('the sandbox tests run as root: they create an unprivileged user (useradd -m) and run the fixtures as it too');
  }
  for (const name of [TEST_USER, NOSUB_USER]) {
    // Test files run in parallel and useradd locks /etc/passwd: another worker may be adding the same user.
    for (let attempt = 0; !hasUser(name); attempt++) {
      const r = spawnSync('useradd', ['-m', '-s', '/bin/sh', name], { encoding: 'utf8' });
      if (r.status === 0 || hasUser(name)) break;
      if (attempt >= 20) throw new Error(`useradd ${name} failed: ${r.stderr.trim()}`);
      spawnSync('sleep', ['0.2']);
    }
  }
  // The full-mapping user needs a range (useradd makes one on Debian; add one where it did not).
  for (const file of ['/etc/subuid', '/etc/subgid']) {
    const text = existsSync(file) ? readFileSync(file, 'utf8') : '';
    let lines = text.split('\n').filter((l) => l !== '');
    lines = lines.filter((l) => !l.startsWith(`${NOSUB_USER}:`));
    if (!lines.some((l) => l.startsWith(`${TEST_USER}:`))) {
      const top = lines.reduce((m, l) => Math.max(m, Number(l.split(':')[1]) + Number(l.split(':')[2]) || 0), 100000);
      lines.push(`${TEST_USER}:${top}:65536`);
    }
    const next = `${lines.join('\n')}\n`;
    if (next !== text) writeFileSync(file, next);
  }
  return { user: TEST_USER, nosub: NOSUB_USER };
}
