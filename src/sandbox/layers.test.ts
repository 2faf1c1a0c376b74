import { spawnSync } from 'node:child_process';
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setAttributeSync } from '@napi-rs/xattr';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { LayerStack, UpperPreparer } from './layers.js';

let dir: string;
const layer = (name: string) => {
  const p = join(dir, name);
  mkdirSync(p, { recursive: true });
  return p;
};
const file = (path: string, content = 'x') => {
  mkdirSync(join(path, '..'), { recursive: true });
  writeFileSync(path, content);
};
const whiteout = (path: string) => {
  mkdirSync(join(path, '..'), { recursive: true });
  const r = spawnSync('mknod', [path, 'c', '0', '0']);
  if (r.status !== 0) throw new Error(`mknod: ${r.stderr}`);
};

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'kiln-layers-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

describe('LayerStack', () => {
  it('follows overlay rules: upper over lower, whiteouts hide, opaque directories stop the merge', () => {
    const upper = layer('upper');
    const top = layer('top');
    const bottom = layer('bottom');
    file(join(bottom, 'etc/passwd'), 'bottom');
    file(join(bottom, 'etc/group'), 'bottom');
    file(join(bottom, 'srv/a'), 'a');
    file(join(bottom, 'gone'), 'gone');
    file(join(top, 'etc/passwd'), 'top');
    whiteout(join(top, 'gone'));
    mkdirSync(join(top, 'srv'), { recursive: true });
    setAttributeSync(join(top, 'srv'), 'user.overlay.opaque', Buffer.from('y'));
    file(join(top, 'srv/b'), 'b');
    const stack = new LayerStack([upper, top, bottom]);
    expect(stack.readFile('/etc/passwd')?.toString()).toBe('top');
    expect(stack.readFile('/etc/group')?.toString()).toBe('bottom');
    expect(stack.lookup(['gone'])).toBeUndefined();
    expect(stack.lookup(['srv', 'a'])).toBeUndefined();
    expect(stack.lookup(['srv', 'b'])?.layer).toBe(1);
    expect(stack.lookup(['etc'])?.layer).toBe(1);
  });

  it('resolves symlinks inside the image root, never outside it', () => {
    const l = layer('l');
    file(join(l, 'real/etc/resolv.conf'), 'ns');
    symlinkSync('/real/etc', join(l, 'etc'));
    symlinkSync('../../../../../real', join(l, 'up'));
    symlinkSync('/nonexistent/target', join(l, 'dangling'));
    const stack = new LayerStack([l]);
    expect(stack.resolve('/etc/resolv.conf').components).toEqual(['real', 'etc', 'resolv.conf']);
    expect(stack.resolve('/up/etc/resolv.conf').components).toEqual(['real', 'etc', 'resolv.conf']);
    expect(stack.resolve('/dangling').components).toEqual(['nonexistent', 'target']);
    expect(stack.resolve('/dangling').found).toBeUndefined();
    expect(stack.resolve('/dangling', false).components).toEqual(['dangling']);
    expect(stack.resolve('/a/../../etc').components).toEqual(['real', 'etc']);
  });

  it('refuses a path through a file, and symlink loops', () => {
    const l = layer('l');
    file(join(l, 'f'));
    symlinkSync('/loop', join(l, 'loop'));
    const stack = new LayerStack([l]);
    expect(() => stack.resolve('/f/x')).toThrow(/is not a directory/);
    expect(() => stack.resolve('/loop/x')).toThrow(/too many levels of symbolic links/);
  });
});

describe('UpperPreparer', () => {
  it('creates mount points with the lower layer\'s metadata and removes them after the step', () => {
    const upper = layer('upper');
    const lower = layer('lower');
    mkdirSync(join(lower, 'etc'), { mode: 0o750 });
    const stack = new LayerStack([upper, lower]);
    const prep = new UpperPreparer(stack);
    prep.ensureFile(['etc', 'hosts']);
    prep.ensureDir(['run', 'secrets'], true);
    prep.ensureDir(['work', 'dir'], false);
    prep.finish();
    expect(lstatSync(join(upper, 'etc')).mode & 0o7777).toBe(0o750);
    expect(existsSync(join(upper, 'etc/hosts'))).toBe(true);
    // the step wrote into /run
    file(join(upper, 'run/kept'));
    prep.removeStubs();
    expect(readdirSync(upper).sort()).toEqual(['run', 'work']);
    expect(readdirSync(join(upper, 'run'))).toEqual(['kept']);
    expect(existsSync(join(upper, 'work/dir'))).toBe(true);
  });

  it('keeps a copied directory whose mode the step changed', () => {
    const upper = layer('upper');
    const lower = layer('lower');
    mkdirSync(join(lower, 'etc'), { mode: 0o755 });
    const prep = new UpperPreparer(new LayerStack([upper, lower]));
    prep.ensureFile(['etc', 'resolv.conf']);
    spawnSync('chmod', ['0700', join(upper, 'etc')]);
    prep.removeStubs();
    expect(readdirSync(upper)).toEqual(['etc']);
    expect(readdirSync(join(upper, 'etc'))).toEqual([]);
  });
});
