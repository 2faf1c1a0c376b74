/**
 * Symlink resolution inside the build context, as BuildKit resolves COPY sources against what the
 * client sent: the path is first cleaned lexically (so `a/link/..` is `a`), then resolved element
 * by element through the context's own symlinks. The context directory acts as `/`: an absolute
 * target starts again from the context root. Elements that are missing (or excluded by the ignore
 * rules, which is the same thing here) are taken as they are, so the result can name a path that
 * does not exist.
 *
 * Where BuildKit silently clamps a `..` that would climb above the root, kiln refuses: following
 * such a link is an error naming the link.
 */
import { ContextSymlinkEscapeError, ContextSymlinkLoopError } from './errors.js';
import { goClean } from './ignore/gopath.js';
import type { ContextNode, ContextTree } from './scan.js';

/** BuildKit's limit on symlinks followed while resolving one path. */
const MAX_SYMLINKS = 255;

/** `p` (relative, or absolute meaning from the context root) cleaned to a context path: `''` is the root. */
export function contextPath(p: string): string {
  const clean = goClean('/' + p);
  return clean === '/' ? '' : clean.slice(1);
}

export interface Resolved {
  /** The resolved path relative to the context root (`''` for the root). */
  readonly path: string;
  /** What is there, if anything. */
  readonly node: ContextNode | undefined;
}

interface Element {
  readonly name: string;
  /** The link whose target supplied this element. */
  readonly via?: ContextNode;
}

/**
 * Resolves `p` in `tree`. Symlinks in the middle of the path are always followed; the last element
 * only when `followTrailing`.
 * @throws ContextSymlinkEscapeError when a link's target climbs above the context root;
 *   ContextSymlinkLoopError after 255 links.
 */
export function resolveIn(tree: ContextTree, p: string, followTrailing: boolean): Resolved {
  const rel = contextPath(p);
  const direct = tree.byPath.get(rel);
  if (direct && (!followTrailing || direct.type !== 'symlink')) return { path: rel, node: direct };
  if (rel === '') return { path: rel, node: direct };

  const current: string[] = [];
  // Elements still to apply, last one first (so prepending a link's target is a push).
  const pending: Element[] = rel.split('/').reverse().map((name) => ({ name }));
  let links = 0;
  while (pending.length > 0) {
    const el = pending.pop()!;
    if (el.name === '' || el.name === '.') continue;
    if (el.name === '..') {
      if (current.length === 0) {
        // Only a link target can get here: the path itself was cleaned.
        if (el.via) throw new ContextSymlinkEscapeError(el.via.path, el.via.target ?? '');
        continue;
      }
      current.pop();
      continue;
    }
    current.push(el.name);
    const node = tree.byPath.get(current.join('/'));
    if (!node || node.type !== 'symlink') continue;
    if (!followTrailing && pending.length === 0) break;
    if (++links > MAX_SYMLINKS) throw new ContextSymlinkLoopError(p);
    current.pop();
    const target = node.target ?? '';
    if (target.startsWith('/')) current.length = 0;
    const parts = target.split('/');
    for (let i = parts.length - 1; i >= 0; i--) pending.push({ name: parts[i]!, via: node });
  }
  const path = current.join('/');
  return { path, node: tree.byPath.get(path) };
}
