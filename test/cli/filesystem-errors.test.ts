/**
 * A file system that refuses (a store another user owns) is the user's situation, not a kiln bug:
 * one line naming the operation and the path, with a hint, and a failing status — never a stack.
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { KILN_BIN, kiln } from '../helpers/kiln.js';

const asRoot = process.getuid?.() === 0;

describe.skipIf(!asRoot)('a store the user cannot write', () => {
  const dir = mkdtempSync(join(tmpdir(), 'kiln-rostore-'));
  const root = join(dir, 'store');
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('is one line naming the refused operation and path, with a hint', () => {
    expect(kiln(['--root', root, 'images']).status).toBe(0);
    chmodSync(dir, 0o755);
    chmodSync(root, 0o755);
    const r = spawnSync('runuser', ['-u', 'nobody', '--', process.execPath, KILN_BIN, '--root', root, 'volume', 'create', 'data'], {
      encoding: 'utf8',
      cwd: tmpdir(),
    });
    expect(r.status).not.toBe(0);
    const lines = r.stderr.split('\n').filter((l) => l && !/warning: running with a single-uid|^\s+fix:/.test(l));
    expect(lines).toEqual([expect.stringMatching(new RegExp(`^kiln: permission denied: \\w+ ${root}/\\S+ \\(hint: the store \\(--root or KILN_ROOT\\) must be writable by this user`))]);
    expect(r.stderr).not.toContain('internal error');
  });
});
