/** Absolute in-view paths: lexical cleaning (Go's path.Clean rooted at `/`) and small helpers. */

/** The components of `path` taken as absolute: empty and `.` parts dropped, `..` resolved lexically (never above the root). */
export function components(path: string): string[] {
  const out: string[] = [];
  for (const part of path.split('/')) {
    if (part === '' || part === '.') continue;
    if (part === '..') {
      out.pop();
      continue;
    }
    out.push(part);
  }
  return out;
}

/** `path` as a clean absolute path (`/` for the root). */
export function cleanAbs(path: string): string {
  return '/' + components(path).join('/');
}

export function joinAbs(dir: string, name: string): string {
  return dir === '/' ? `/${name}` : `${dir}/${name}`;
}

/** Parent of a clean absolute path (`/` for the root and its children). */
export function parentOf(path: string): string {
  const i = path.lastIndexOf('/');
  return i <= 0 ? '/' : path.slice(0, i);
}

/** Last component of a clean absolute path ('' for the root). */
export function baseOf(path: string): string {
  return path.slice(path.lastIndexOf('/') + 1);
}

/** The ancestors of a clean absolute path, outermost first, excluding `/` and the path itself. */
export function ancestorsOf(path: string): string[] {
  const out: string[] = [];
  for (let i = path.indexOf('/', 1); i > 0; i = path.indexOf('/', i + 1)) out.push(path.slice(0, i));
  return out;
}

/** Whether `path` is `dir` or below it (both clean absolute paths). */
export function isWithin(path: string, dir: string): boolean {
  return dir === '/' || path === dir || path.startsWith(`${dir}/`);
}
