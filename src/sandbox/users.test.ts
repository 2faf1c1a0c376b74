import { describe, expect, it } from 'vitest';
import { parseGroup, parsePasswd, resolveUser } from './users.js';

const PASSWD = 'root:x:0:0:root:/root:/bin/sh\nu:x:1000:1000::/home/u:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n# comment\nbroken:line\n';
const GROUP = 'root:x:0:\nu:x:1000:\nwheel:x:10:u,other\nstaff:x:50: u \n';

describe('resolveUser', () => {
  it('defaults to root with root\'s home and groups', () => {
    expect(resolveUser(undefined, PASSWD, GROUP)).toEqual({ uid: 0, gid: 0, groups: [0], home: '/root', name: 'root' });
    expect(resolveUser('', undefined, undefined)).toEqual({ uid: 0, gid: 0, groups: [0], home: '/' });
  });

  it('resolves a name or a uid through passwd, with its primary group and the groups that list the user', () => {
    const u = { uid: 1000, gid: 1000, groups: [1000, 10, 50], home: '/home/u', name: 'u' };
    expect(resolveUser('u', PASSWD, GROUP)).toEqual(u);
    expect(resolveUser('1000', PASSWD, GROUP)).toEqual(u);
  });

  it('an explicit group replaces the primary group and drops the supplementary ones', () => {
    expect(resolveUser('u:wheel', PASSWD, GROUP)).toMatchObject({ uid: 1000, gid: 10, groups: [10] });
    expect(resolveUser('u:50', PASSWD, GROUP)).toMatchObject({ gid: 50, groups: [50] });
    expect(resolveUser('1000:4242', PASSWD, GROUP)).toMatchObject({ uid: 1000, gid: 4242 });
  });

  it('a numeric user without an entry runs with gid 0 and HOME=/', () => {
    expect(resolveUser('4242', PASSWD, GROUP)).toEqual({ uid: 4242, gid: 0, groups: [0], home: '/' });
    expect(resolveUser('4242:7', undefined, undefined)).toEqual({ uid: 4242, gid: 7, groups: [7], home: '/' });
  });

  it('refuses unknown names with runc\'s words', () => {
    expect(() => resolveUser('ghost', PASSWD, GROUP)).toThrow('unable to find user ghost: no matching entries in passwd file');
    expect(() => resolveUser('u:ghosts', PASSWD, GROUP)).toThrow('unable to find group ghosts: no matching entries in group file');
    expect(() => resolveUser('u', undefined, undefined)).toThrow(/unable to find user u/);
  });

  it('parses passwd and group files leniently', () => {
    expect(parsePasswd(PASSWD).map((p) => p.name)).toEqual(['root', 'u', 'nobody']);
    expect(parseGroup(GROUP).find((g) => g.name === 'staff')?.members).toEqual(['u']);
  });
});
