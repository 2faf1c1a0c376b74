import { promises as fsp } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { busyboxLayers, file, symlink, tempDir } from '../../../test/helpers/copy-fixtures.js';
import { LayeredFS, UserLookupError, lookupGroup, lookupUser, parseGroup, parsePasswd } from './index.js';

let base: string;
let view: LayeredFS;

beforeAll(async () => {
  base = await tempDir();
  view = new LayeredFS(await busyboxLayers(base));
});

afterAll(async () => {
  await fsp.rm(base, { recursive: true, force: true });
});

describe('--chown rules', () => {
  it.each([
    ['0', 0, 0],
    ['root', 0, 0],
    ['1000', 1000, 1000],
    ['app', 1000, 1000],
    ['web', 33, 33],
    ['app:staff', 1000, 50],
    ['1000:wheel', 1000, 10],
    ['daemon:7', 1, 7],
    ['root:root', 0, 0],
    [':50', 0, 50],
    ['app:', 1000, 1000],
  ])('%s → %d:%d', async (spec, uid, gid) => {
    const u = await lookupUser(view, spec);
    expect([u.uid, u.gid]).toEqual([uid, gid]);
  });

  it('refuses unknown names instead of falling back to root', async () => {
    await expect(lookupUser(view, 'nobody')).rejects.toThrow('unable to find user nobody: no matching entries in passwd file');
    await expect(lookupUser(view, 'app:nogroup')).rejects.toThrow('unable to find group nogroup: no matching entries in group file');
    await expect(lookupUser(undefined, 'app')).rejects.toBeInstanceOf(UserLookupError);
    await expect(lookupUser(view, '-1')).rejects.toThrow(/must be in range/);
  });

  it('resolves group names on their own', async () => {
    expect(await lookupGroup(view, 'staff')).toBe(50);
    expect(await lookupGroup(view, '77')).toBe(77);
  });
});

describe('USER rules', () => {
  it('takes uid:gid as is and gives unknown numeric uids group 0', async () => {
    expect(await lookupUser(view, '4242:4243', { purpose: 'user' })).toMatchObject({ uid: 4242, gid: 4243 });
    expect(await lookupUser(view, '4242', { purpose: 'user' })).toMatchObject({ uid: 4242, gid: 0 });
    expect(await lookupUser(view, '', { purpose: 'user' })).toMatchObject({ uid: 0, gid: 0 });
  });

  it('uses the passwd entry and collects supplementary groups', async () => {
    const u = await lookupUser(view, 'app', { purpose: 'user' });
    expect(u).toMatchObject({ uid: 1000, gid: 1000, home: '/home/app', name: 'app' });
    expect(u.sgids).toEqual([10, 50]);
    expect(await lookupUser(view, '1000', { purpose: 'user' })).toMatchObject({ uid: 1000, gid: 1000 });
    expect(await lookupUser(view, 'app:wheel', { purpose: 'user' })).toMatchObject({ uid: 1000, gid: 10, sgids: [] });
  });

  it('fails for unknown names', async () => {
    await expect(lookupUser(view, 'ghost', { purpose: 'user' })).rejects.toThrow('unable to find user ghost');
    await expect(lookupUser(view, 'app:ghosts', { purpose: 'user' })).rejects.toThrow('unable to find group ghosts');
  });
});

describe('user database files', () => {
  it('parses like moby/sys/user (comments only in group, bad numbers read as 0)', () => {
    expect(parsePasswd('  a:x:1:2:g:/h:/s  \n\nb:x:oops:3\n')).toEqual([
      { name: 'a', uid: 1, gid: 2, home: '/h', shell: '/s' },
      { name: 'b', uid: 0, gid: 3, home: '', shell: '' },
    ]);
    expect(parseGroup('# c\ng:x:5:a,b\nh:x:6:\n')).toEqual([
      { name: 'g', gid: 5, members: ['a', 'b'] },
      { name: 'h', gid: 6, members: [] },
    ]);
  });

  it('follows an /etc/passwd symlink inside the view and treats a missing file as empty', async () => {
    const b = await tempDir();
    try {
      await file(b, 'l/data/passwd', 'svc:x:7:8::/:/bin/false\n');
      await symlink(b, 'l/etc/passwd', '/data/passwd');
      const v = new LayeredFS([join(b, 'l')]);
      expect(await lookupUser(v, 'svc')).toMatchObject({ uid: 7, gid: 8 });
      await expect(lookupUser(v, 'svc:grp')).rejects.toThrow('unable to find group grp');
    } finally {
      await fsp.rm(b, { recursive: true, force: true });
    }
  });
});
