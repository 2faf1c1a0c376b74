/**
 * Symlink resolution inside a tree, the way securejoin's FollowSymlinkInScope (and continuity's
 * RootPath, which BuildKit uses for COPY) does it: the path is walked one component at a time, a
 * symlink's target is spliced in place of the component, an absolute target restarts at the tree's
 * root and `..` never climbs above it. Components that do not exist are kept as written, so the
 * result names where something would be created.
 *
 * A confined tree (the build context) refuses instead of re-rooting: a link whose target is absolute
 * or climbs above the root throws OutsideRootError.
 */
import { FSViewError, OutsideRootError } from './errors.js';
import { cleanAbs, components } from './paths.js';

/** Linux's MAXSYMLINKS for one path walk. */
export const MAX_SYMLINKS = 40;

export interface RawNode {
  isSymlink: boolean;
  /** Reads the link target (only called for symlinks). */
  readlink(): Promise<string>;
}

export interface ResolveContext {
  /** The node at a physical path (every component literal), or undefined. */
  raw(path: string): Promise<RawNode | undefined>;
  /** When set, links out of the tree are refused and this names the tree in the error. */
  confinedLabel?: string;
}

export async function resolveInTree(path: string, followFinal: boolean, ctx: ResolveContext): Promise<string> {
  const pending = components(path);
  const cur: string[] = [];
  let links = 0;
  while (pending.length > 0) {
    const part = pending.shift()!;
    if (part === '' || part === '.') continue;
    if (part === '..') {
      // Input paths are clean, so a `..` here came from a link target.
      if (cur.length === 0) {
        if (ctx.confinedLabel !== undefined) throw new FSViewError('EINVAL', path, 'unexpected ".." above the root');
        continue;
      }
      cur.pop();
      continue;
    }
    const here = '/' + [...cur, part].join('/');
    const last = pending.length === 0;
    const node = await ctx.raw(here);
    if (node?.isSymlink && (!last || followFinal)) {
      if (++links > MAX_SYMLINKS) throw new FSViewError('ELOOP', cleanAbs(path), 'too many levels of symbolic links');
      const target = await node.readlink();
      if (ctx.confinedLabel !== undefined) checkConfined(here, target, cur.length, ctx.confinedLabel);
      if (target.startsWith('/')) cur.length = 0;
      pending.unshift(...target.split('/'));
      continue;
    }
    cur.push(part);
  }
  return '/' + cur.join('/');
}

/** Refuses a link (at `linkPath`, whose directory is `depth` components deep) whose target leaves the root. */
function checkConfined(linkPath: string, target: string, depth: number, label: string): void {
  if (target.startsWith('/')) throw new OutsideRootError(linkPath, target, label);
  let d = depth;
  for (const part of target.split('/')) {
    if (part === '' || part === '.') continue;
    if (part === '..') {
      if (--d < 0) throw new OutsideRootError(linkPath, target, label);
    } else {
      d++;
    }
  }
}
