/** User-namespace id maps: the process's own, and the subordinate ranges /etc/subuid and /etc/subgid grant. */
import { readFileSync } from 'node:fs';
import { userInfo } from 'node:os';

export interface IdMapEntry {
  /** First id inside the namespace. */
  inside: number;
  /** First id outside (in the parent namespace). */
  outside: number;
  count: number;
}

export interface SubRange {
  start: number;
  count: number;
}

/** Parses /proc/<pid>/uid_map or gid_map. */
export function parseIdMap(text: string): IdMapEntry[] {
  const out: IdMapEntry[] = [];
  for (const line of text.split('\n')) {
    const f = line.trim().split(/\s+/);
    if (f.length !== 3) continue;
    const [inside, outside, count] = f.map(Number) as [number, number, number];
    if ([inside, outside, count].every(Number.isSafeInteger)) out.push({ inside, outside, count });
  }
  return out;
}

export function readIdMap(kind: 'uid' | 'gid', pid: number | 'self' = 'self'): IdMapEntry[] {
  try {
    return parseIdMap(readFileSync(`/proc/${pid}/${kind}_map`, 'utf8'));
  } catch {
    return [];
  }
}

/** The initial namespace's map: every id maps to itself. */
export function isIdentityMap(map: IdMapEntry[]): boolean {
  return map.length === 1 && map[0]!.inside === 0 && map[0]!.outside === 0 && map[0]!.count === 4294967295;
}

/** How many ids a map covers. */
export function mappedCount(map: IdMapEntry[]): number {
  return map.reduce((n, e) => n + e.count, 0);
}

/** True when `id` (inside the namespace) is mapped. */
export function isMapped(map: IdMapEntry[], id: number): boolean {
  return map.some((e) => id >= e.inside && id < e.inside + e.count);
}

/**
 * The ranges /etc/subuid (or /etc/subgid) grants a user, matched by name or by numeric id as
 * shadow's newuidmap does. Lines are `name:start:count`; malformed ones are ignored.
 */
export function parseSubIds(text: string, user: { name: string; id: number }): SubRange[] {
  const out: SubRange[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (!line || line.startsWith('#')) continue;
    const [who, start, count] = line.split(':');
    if (who !== user.name && who !== String(user.id)) continue;
    const s = Number(start);
    const c = Number(count);
    if (Number.isSafeInteger(s) && Number.isSafeInteger(c) && s >= 0 && c > 0) out.push({ start: s, count: c });
  }
  return out;
}

export function readSubIds(file: '/etc/subuid' | '/etc/subgid' | string, user: { name: string; id: number }): { ranges: SubRange[]; error?: string } {
  try {
    return { ranges: parseSubIds(readFileSync(file, 'utf8'), user) };
  } catch (err) {
    return { ranges: [], error: (err as Error).message };
  }
}

/**
 * The map kiln writes for a user: in-namespace root is the user itself, and 1.. are the user's
 * subordinate ids in order (all of its ranges, as far as a map may have lines). In-namespace 65534
 * (nobody) is covered as soon as the ranges hold 65534 ids.
 */
export function buildMap(own: number, ranges: SubRange[]): IdMapEntry[] {
  const map: IdMapEntry[] = [{ inside: 0, outside: own, count: 1 }];
  let next = 1;
  // The kernel accepts 340 lines; newuidmap in old shadow versions only 5.
  for (const r of ranges.slice(0, 4)) {
    // A range that contains the user's own id would map it twice; the kernel refuses overlaps.
    if (own >= r.start && own < r.start + r.count) continue;
    map.push({ inside: next, outside: r.start, count: r.count });
    next += r.count;
  }
  return map;
}

/** `newuidmap PID` arguments for a map. */
export function mapArgs(map: IdMapEntry[]): string[] {
  return map.flatMap((e) => [String(e.inside), String(e.outside), String(e.count)]);
}

/** The user's name (for /etc/subuid lookups); falls back to the numeric id. */
export function currentUserName(): string {
  try {
    return userInfo().username;
  } catch {
    return String(process.getuid?.() ?? '');
  }
}
