/**
 * User and group names resolved from a tree's /etc/passwd and /etc/group, with the two rule sets
 * BuildKit has:
 *
 * `chown` (COPY/ADD --chown, BuildKit's llb.WithUser + readUser): the value is split at the first
 * `:`; each side is `root` (0), a decimal id, or a name. A numeric user with no group gives
 * `uid:uid`; a user name gives that user's primary group unless a group is named. BuildKit maps an
 * unknown name to 0 without a word, which quietly gives files to root; kiln refuses instead (as
 * Docker's classic builder did), and treats `user:` (empty group) as "the user's primary group".
 *
 * `user` (USER and the runtime, moby/sys/user GetExecUser): `uid:gid` numeric is taken as is; a
 * numeric uid not in passwd runs with gid 0; a name must exist; the implicit form collects
 * supplementary groups from /etc/group.
 *
 * Both files are read through the view (symlinks resolved inside it), must be regular files, and are
 * capped at 10 MiB like BuildKit's reader.
 */
import { KilnError } from '../../errors.js';
import { FSViewError } from './errors.js';
import type { ReadOnlyFS } from './types.js';

export interface PasswdEntry {
  name: string;
  uid: number;
  gid: number;
  home: string;
  shell: string;
}

export interface GroupEntry {
  name: string;
  gid: number;
  members: string[];
}

export interface ResolvedUser {
  uid: number;
  gid: number;
  /** The passwd entry's name when one matched. */
  name?: string;
  home?: string;
  /** Supplementary groups (`user` rules, implicit group form only). */
  sgids: number[];
}

/** A user or group spec that cannot be resolved against the image. */
export class UserLookupError extends KilnError {
  constructor(readonly spec: string, message: string) {
    super('USER_LOOKUP', message, {
      hint: 'create the user in an earlier step (RUN adduser ...) or give numeric ids',
    });
  }
}

const MAX_USER_FILE = 10 << 20;
const MAX_ID = 2 ** 31 - 1;

/** Parses passwd lines (`name:pass:uid:gid:gecos:home:shell`); malformed numbers read as 0, as Go's parser does. */
export function parsePasswd(text: string): PasswdEntry[] {
  const out: PasswdEntry[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '') continue;
    const f = line.split(':');
    out.push({ name: f[0] ?? '', uid: atoi(f[2]), gid: atoi(f[3]), home: f[5] ?? '', shell: f[6] ?? '' });
  }
  return out;
}

/** Parses group lines (`name:pass:gid:member,member`); `#` comments are skipped like glibc. */
export function parseGroup(text: string): GroupEntry[] {
  const out: GroupEntry[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const f = line.split(':');
    const list = f[3] ?? '';
    out.push({ name: f[0] ?? '', gid: atoi(f[2]), members: list === '' ? [] : list.split(',') });
  }
  return out;
}

/** Reads /etc/passwd of the view; undefined when it does not exist. */
export async function readPasswd(view: ReadOnlyFS): Promise<PasswdEntry[] | undefined> {
  const text = await readUserFile(view, '/etc/passwd');
  return text === undefined ? undefined : parsePasswd(text);
}

/** Reads /etc/group of the view; undefined when it does not exist. */
export async function readGroup(view: ReadOnlyFS): Promise<GroupEntry[] | undefined> {
  const text = await readUserFile(view, '/etc/group');
  return text === undefined ? undefined : parseGroup(text);
}

export interface LookupUserOptions {
  /** `chown` (default): COPY/ADD --chown rules; `user`: USER / runtime rules. */
  purpose?: 'chown' | 'user';
}

/**
 * Resolves `name`, `uid`, `name:group`, `uid:gid` (and mixes) against the view's user database.
 * @throws UserLookupError for unknown names and malformed ids.
 */
export async function lookupUser(view: ReadOnlyFS | undefined, spec: string, options: LookupUserOptions = {}): Promise<ResolvedUser> {
  return (options.purpose ?? 'chown') === 'chown' ? chownUser(view, spec) : execUser(view, spec);
}

/** Resolves a group name or id against the view's /etc/group (`root` is 0). */
export async function lookupGroup(view: ReadOnlyFS | undefined, group: string): Promise<number> {
  const id = chownId(group);
  if (id !== undefined) return id;
  const groups = view ? await readGroup(view) : undefined;
  const found = groups?.find((g) => g.name === group);
  if (!found) throw new UserLookupError(group, `unable to find group ${group}: no matching entries in group file`);
  return found.gid;
}

async function chownUser(view: ReadOnlyFS | undefined, spec: string): Promise<ResolvedUser> {
  const colon = spec.indexOf(':');
  const userPart = colon < 0 ? spec : spec.slice(0, colon);
  const groupPart = colon < 0 ? undefined : spec.slice(colon + 1);
  const result: ResolvedUser = { uid: 0, gid: 0, sgids: [] };
  if (userPart !== '') {
    const uid = chownId(userPart);
    if (uid !== undefined) {
      result.uid = uid;
      result.gid = uid;
    } else {
      const users = view ? await readPasswd(view) : undefined;
      const found = users?.find((u) => u.name === userPart);
      if (!found) throw new UserLookupError(spec, `unable to find user ${userPart}: no matching entries in passwd file`);
      result.uid = found.uid;
      result.gid = found.gid;
      result.name = found.name;
      result.home = found.home;
    }
  }
  if (groupPart !== undefined && groupPart !== '') result.gid = await lookupGroup(view, groupPart);
  return result;
}

/** `root` or a decimal id; undefined for a name. */
function chownId(s: string): number | undefined {
  if (s === 'root') return 0;
  if (!/^[+-]?\d+$/.test(s)) return undefined;
  const n = Number(s);
  if (n < 0 || n > MAX_ID) throw new UserLookupError(s, `invalid id ${s}: uids and gids must be in range 0-${MAX_ID}`);
  return n;
}

async function execUser(view: ReadOnlyFS | undefined, spec: string): Promise<ResolvedUser> {
  if (spec === '') spec = '0';
  const [userArg = '', groupArg = ''] = spec.split(':');
  const uidArg = numeric(userArg);
  const gidArg = numeric(groupArg);
  // Fast path (BuildKit's ParseUIDGID): both sides numeric, nothing to read.
  const fastUid = userArg === 'root' ? 0 : uidArg;
  const fastGid = groupArg === 'root' ? 0 : gidArg;
  if (spec.includes(':') && fastUid !== undefined && fastGid !== undefined) return { uid: fastUid, gid: fastGid, sgids: [] };

  const users = view ? await readPasswd(view) : undefined;
  const groups = view ? await readGroup(view) : undefined;
  const result: ResolvedUser = { uid: 0, gid: 0, sgids: [] };
  const match = users?.find((u) => (uidArg !== undefined ? u.uid === uidArg : u.name === userArg));
  if (match) {
    result.uid = match.uid;
    result.gid = match.gid;
    result.name = match.name;
    result.home = match.home;
  } else if (uidArg !== undefined) {
    result.uid = uidArg;
  } else {
    throw new UserLookupError(spec, `unable to find user ${userArg}: no matching entries in passwd file`);
  }
  if (groupArg !== '') {
    const g = groups?.find((x) => (gidArg !== undefined ? x.gid === gidArg : x.name === groupArg));
    if (g) result.gid = g.gid;
    else if (gidArg !== undefined) result.gid = gidArg;
    else throw new UserLookupError(spec, `unable to find group ${groupArg}: no matching entries in group file`);
  } else if (match) {
    result.sgids = (groups ?? []).filter((g) => g.members.includes(match.name)).map((g) => g.gid);
  }
  return result;
}

/** A decimal id (Go's strconv.Atoi plus the 0..2^31-1 range check), or undefined for a name. */
function numeric(s: string): number | undefined {
  if (!/^[+-]?\d+$/.test(s)) return undefined;
  const n = Number(s);
  if (n < 0 || n > MAX_ID) throw new UserLookupError(s, `invalid id ${s}: uids and gids must be in range 0-${MAX_ID}`);
  return n;
}

function atoi(s: string | undefined): number {
  if (s === undefined || !/^[+-]?\d+$/.test(s)) return 0;
  const n = Number(s);
  return Number.isSafeInteger(n) ? n : 0;
}

async function readUserFile(view: ReadOnlyFS, path: string): Promise<string | undefined> {
  try {
    return (await view.readFile(path, { maxBytes: MAX_USER_FILE })).toString('utf8');
  } catch (err) {
    if (err instanceof FSViewError) {
      if (err.errno === 'ENOENT' || err.errno === 'ENOTDIR') return undefined;
      if (err.errno === 'EFBIG') throw new UserLookupError(path, `${path} exceeds ${MAX_USER_FILE} bytes`);
      throw new UserLookupError(path, `${path} is not a regular file`);
    }
    throw err;
  }
}
