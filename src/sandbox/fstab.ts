/**
 * The sandbox's mounts as an fstab file for `mount -a -T`. One mount(8) process sets up every file
 * system of a RUN: starting a program costs milliseconds here, a mount syscall microseconds, so a
 * dozen separate `mount` calls would dominate the cost of a trivial RUN.
 */

export interface FstabEntry {
  source: string;
  target: string;
  type: string;
  options: string[];
}

/** fstab fields escape whitespace and backslashes as octal (libmount's unmangle). */
export function escapeField(value: string): string {
  if (value === '') return '""';
  return value.replace(/[\s\\#]/g, (c) => `\\${c.charCodeAt(0).toString(8).padStart(3, '0')}`);
}

export function formatFstab(entries: FstabEntry[]): string {
  return entries
    .map((e) => [escapeField(e.source), escapeField(e.target), e.type, e.options.length ? e.options.join(',') : 'defaults', '0', '0'].join(' '))
    .join('\n')
    .concat('\n');
}

/** Escapes a path for overlay's own option parsing (lowerdir/upperdir/workdir values). */
export function escapeOverlayPath(path: string): string {
  return path.replace(/[\\:,]/g, (c) => `\\${c}`);
}
