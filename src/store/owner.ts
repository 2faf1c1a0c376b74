/**
 * Which process owns a temp file or a lease, and whether it still runs. A pid alone can be reused
 * after the owner dies, so owners are recorded as pid plus the process start time from
 * /proc/<pid>/stat; a pid that now belongs to a different process counts as dead.
 */
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';

export interface Owner {
  pid: number;
  /** Start time in clock ticks since boot (`/proc/<pid>/stat` field 22); undefined where unknown. */
  start: string | undefined;
}

/** Start time of a process, or undefined when there is no such process (or no /proc). */
export function processStartTime(pid: number): string | undefined {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // The command name (field 2) is parenthesised and may contain spaces or parentheses.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return fields[19];
}

function procState(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[0];
  } catch {
    return undefined;
  }
}

let selfOwner: Owner | undefined;

export function currentOwner(): Owner {
  if (!selfOwner || selfOwner.pid !== process.pid) selfOwner = { pid: process.pid, start: processStartTime(process.pid) };
  return selfOwner;
}

/** `<pid>.<start>`: the prefix of every temp name this process creates in the store. */
export function ownerTag(owner: Owner = currentOwner()): string {
  return `${owner.pid}.${owner.start ?? '0'}`;
}

/** The owner encoded at the start of a temp name (`<pid>.<start>-…`), or undefined if it has none. */
export function parseOwnerTag(name: string): Owner | undefined {
  const m = /^(\d+)\.(\d+)-/.exec(name);
  if (!m) return undefined;
  return { pid: Number(m[1]), start: m[2] === '0' ? undefined : m[2] };
}

export function isAlive(owner: Owner): boolean {
  if (owner.pid === process.pid) return owner.start === undefined || owner.start === currentOwner().start;
  const start = processStartTime(owner.pid);
  if (start === undefined) {
    if (procAvailable()) return false;
    try {
      process.kill(owner.pid, 0);
      return true;
    } catch (err) {
      return (err as NodeJS.ErrnoException).code === 'EPERM';
    }
  }
  if (owner.start !== undefined && start !== owner.start) return false;
  // A killed child that its parent has not reaped yet is a zombie: it will never finish its write.
  return procState(owner.pid) !== 'Z';
}

let procChecked: boolean | undefined;
function procAvailable(): boolean {
  if (procChecked === undefined) procChecked = processStartTime(process.pid) !== undefined;
  return procChecked;
}

export function currentHost(): string {
  return hostname();
}
