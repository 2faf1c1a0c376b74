/**
 * `USER` resolution against the image's own /etc/passwd and /etc/group, with runc's rules (which
 * Docker and BuildKit inherit): `name`, `uid`, `name:group`, `uid:gid`; a numeric user without a
 * passwd entry runs with gid 0 and HOME=/; supplementary groups are the groups listing the user as
 * a member, and only when no group was given explicitly. The primary group always leads the
 * supplementary list, as containerd and BuildKit set it up (`id` shows `groups=10(wheel),1000(u)`).
 */
import { RunUserError } from './errors.js';

export interface ExecUser {
  uid: number;
  gid: number;
  /** Supplementary groups: `gid` first, then the groups listing the user (when no group was given). */
  groups: number[];
  home: string;
  name?: string;
}

interface PasswdEntry {
  name: string;
  uid: number;
  gid: number;
  home: string;
}

interface GroupEntry {
  name: string;
  gid: number;
  members: string[];
}

const ID_MAX = 2 ** 31 - 1;

function parseId(s: string): number | undefined {
  if (!/^[0-9]+$/.test(s)) return undefined;
  const n = Number(s);
  return n <= ID_MAX ? n : undefined;
}

export function parsePasswd(text: string): PasswdEntry[] {
  const out: PasswdEntry[] = [];
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const f = line.split(':');
    const uid = parseId(f[2] ?? '');
    const gid = parseId(f[3] ?? '');
    if (!f[0] || uid === undefined || gid === undefined) continue;
    out.push({ name: f[0], uid, gid, home: f[5] ?? '' });
  }
  return out;
}

export function parseGroup(text: string): GroupEntry[] {
  const out: GroupEntry[] = [];
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const f = line.split(':');
    const gid = parseId(f[2] ?? '');
    if (!f[0] || gid === undefined) continue;
    out.push({ name: f[0], gid, members: (f[3] ?? '').split(',').map((m) => m.trim()).filter(Boolean) });
  }
  return out;
}

/**
 * The user to run as. `passwd`/`group` are the image's files (undefined when it has none).
 * Errors use runc's wording, which users know from `docker build`.
 */
export function resolveUser(spec: string | undefined, passwd: string | undefined, group: string | undefined): ExecUser {
  const value = (spec ?? '').trim();
  const colon = value.indexOf(':');
  const userArg = colon < 0 ? value : value.slice(0, colon);
  const groupArg = colon < 0 ? '' : value.slice(colon + 1);
  const users = passwd === undefined ? [] : parsePasswd(passwd);
  const groups = group === undefined ? [] : parseGroup(group);

  const user: ExecUser = { uid: 0, gid: 0, groups: [], home: '/' };
  let matchedName: string | undefined;
  if (userArg !== '') {
    const numeric = parseId(userArg);
    const entry = users.find((u) => u.name === userArg) ?? (numeric !== undefined ? users.find((u) => u.uid === numeric) : undefined);
    if (entry) {
      user.uid = entry.uid;
      user.gid = entry.gid;
      user.home = entry.home || '/';
      user.name = entry.name;
      matchedName = entry.name;
    } else if (numeric !== undefined) {
      user.uid = numeric;
    } else {
      throw new RunUserError(`unable to find user ${userArg}: no matching entries in passwd file`);
    }
  } else {
    // No USER: root, with root's home and groups when the image has a passwd entry for it.
    const root = users.find((u) => u.uid === 0);
    if (root) {
      user.home = root.home || '/';
      user.name = root.name;
      user.gid = root.gid;
      matchedName = root.name;
    }
  }

  if (groupArg !== '') {
    const numeric = parseId(groupArg);
    const entry = groups.find((g) => (numeric !== undefined ? g.gid === numeric : g.name === groupArg));
    if (entry) user.gid = entry.gid;
    else if (numeric !== undefined) user.gid = numeric;
    else throw new RunUserError(`unable to find group ${groupArg}: no matching entries in group file`);
  } else if (matchedName !== undefined) {
    user.groups = groups.filter((g) => g.members.includes(matchedName!)).map((g) => g.gid);
  }
  user.groups = [user.gid, ...user.groups.filter((g) => g !== user.gid)];
  return user;
}
