import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { SANDBOX_SCRIPT } from './script.js';

describe('the sandbox helper script', () => {
  it('is valid POSIX shell for dash', () => {
    const r = spawnSync('/bin/sh', ['-n', '-c', SANDBOX_SCRIPT], { encoding: 'utf8' });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
  });

  it('reports a setup failure on fd 3 without starting the command', () => {
    const r = spawnSync('/bin/sh', ['-c', `${SANDBOX_SCRIPT}`, 'kiln-sandbox', '/nonexistent-store', 'x', 'mount', '', '', '', 'pivot_root', '', '', '/', 'umount', '--', '--', 'echo', 'ran'], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe', 'pipe'],
    });
    expect(r.status).toBe(1);
    expect(r.stdout).toBe('');
    expect(String(r.output[3])).toBe('cannot enter /nonexistent-store\n');
  });
});
