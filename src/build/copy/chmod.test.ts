import { spawnSync } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tempDir } from '../../../test/helpers/copy-fixtures.js';
import { applyChmod, createdDirMode, parseChmod } from './chmod.js';

let base: string;
beforeAll(async () => {
  base = await tempDir('kiln-chmod-');
});
afterAll(async () => {
  await fsp.rm(base, { recursive: true, force: true });
});

/** What chmod(1) does with a zero umask (buildkitd's), on a real file or directory. */
async function realChmod(spec: string, mode: number, isDir: boolean): Promise<number> {
  const p = join(base, `n${Math.random().toString(36).slice(2)}`);
  if (isDir) await fsp.mkdir(p);
  else await fsp.writeFile(p, '');
  await fsp.chmod(p, mode);
  const r = spawnSync('sh', ['-c', 'umask 0 && chmod "$0" "$1"', spec, p]);
  if (r.status !== 0) throw new Error(r.stderr.toString());
  const st = await fsp.lstat(p);
  await fsp.rm(p, { recursive: true });
  return st.mode & 0o7777;
}

const SPECS = [
  'go-w',
  'u=rw,g=r,o=r',
  'a+X',
  'u+rw,g+r,o-x,o+w',
  '+x',
  '=r',
  'g=u',
  'g=u-w',
  'go=u-w',
  'o=',
  'u+s',
  'g+s',
  'a+t',
  '+t',
  'ug=rwx,o=',
  'a-x',
  'a=rwx',
  'u+x,g-r',
  'o+X',
  'ugo-rwx',
];
const FILES = [0o644, 0o755, 0o600, 0o124, 0o4755, 0o640];
// No sticky or set-gid directories: GNU chmod clears the sticky bit on `o=`/`a=` and keeps a
// directory's set-gid bit on `=`; BuildKit's parser (BSD setmode) does the opposite (tested below).
const DIRS = [0o755, 0o124, 0o700, 0o770];

describe('symbolic --chmod', () => {
  it.each(SPECS)('%s matches chmod(1) with umask 0', async (spec) => {
    const parsed = parseChmod(spec);
    for (const mode of FILES) expect([spec, mode.toString(8), applyChmod(parsed, mode, false).toString(8)]).toEqual([spec, mode.toString(8), (await realChmod(spec, mode, false)).toString(8)]);
    for (const mode of DIRS) expect([spec, mode.toString(8), applyChmod(parsed, mode, true).toString(8)]).toEqual([spec, mode.toString(8), (await realChmod(spec, mode, true)).toString(8)]);
  });

  it('evaluates X against the mode before the whole value, as BuildKit (BSD setmode) does', () => {
    expect(applyChmod(parseChmod('u+x,a+X'), 0o644, false)).toBe(0o744);
    expect(applyChmod(parseChmod('a+X'), 0o744, false)).toBe(0o755);
  });

  it('follows BSD setmode where GNU chmod differs (sticky and set-id bits with =)', () => {
    expect(applyChmod(parseChmod('a=rwx'), 0o1777, true)).toBe(0o1777);
    expect(applyChmod(parseChmod('o=,a-t'), 0o1777, true)).toBe(0o770);
    expect(applyChmod(parseChmod('=r'), 0o2770, true)).toBe(0o444);
    expect(applyChmod(parseChmod('g=u'), 0o2750, true)).toBe(0o2770);
    expect(applyChmod(parseChmod('u=g'), 0o4755, false)).toBe(0o4555);
  });

  it('rejects malformed values', () => {
    for (const bad of ['u', 'u+q', 'x=r', 'u+r,', ',u+r', 'u+r;g+w', '']) expect(() => parseChmod(bad), bad).toThrow(/invalid chmod parameter/);
  });
});

describe('octal --chmod', () => {
  it('sets the exact bits and gives created directories the permission bits', () => {
    const spec = parseChmod('2750');
    expect(applyChmod(spec, 0o644, false)).toBe(0o2750);
    expect(createdDirMode(spec)).toBe(0o750);
    expect(createdDirMode(parseChmod('u+x'))).toBe(0o755);
    expect(createdDirMode(undefined)).toBe(0o755);
  });

  it('uses BuildKit wording for numeric-looking junk', () => {
    for (const bad of ['64a', '10000', '8', '0o755']) {
      expect(() => parseChmod(bad)).toThrow(`invalid chmod parameter: '${bad}'. it should be octal string and between 0 and 07777`);
    }
  });
});
