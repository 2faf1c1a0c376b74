/** Names inside layer tars: whiteout conventions and the checks every entry name goes through. */
import { UnsafeLayerEntryError } from './errors.js';

/** OCI image-spec whiteouts (inherited from AUFS): `.wh.<name>` deletes `<name>` from lower layers. */
export const WHITEOUT_PREFIX = '.wh.';
/** Names starting with this are whiteout metadata, never files of the image. */
export const WHITEOUT_META_PREFIX = '.wh..wh.';
/** `<dir>/.wh..wh..opq` hides everything lower layers have in `<dir>`. */
export const WHITEOUT_OPAQUE = '.wh..wh..opq';

/** Overlay's own bookkeeping (origin, impure, opaque, redirect, ...): meaningless in a layer, never in a tar. */
export function isOverlayXattr(name: string): boolean {
  return name.startsWith('user.overlay.') || name.startsWith('trusted.overlay.');
}

/**
 * The default xattr policy of the writer: everything except `security.selinux`, whose labels belong to
 * the build host's policy, not to the image (Docker and BuildKit leave it out for the same reason).
 */
export function defaultXattrFilter(name: string): boolean {
  return name !== 'security.selinux';
}

/**
 * Splits a tar entry name into its components. `./` prefixes, repeated and trailing slashes are
 * tolerated (tar files made with `tar -C dir -c .` have them); `..` components, absolute names and NUL
 * bytes are refused because they can only be meant to reach outside the target.
 */
export function entryComponents(name: string): string[] {
  if (name.includes('\0')) throw new UnsafeLayerEntryError(name, 'the name contains a NUL byte');
  if (name.startsWith('/')) throw new UnsafeLayerEntryError(name, 'absolute path');
  const parts: string[] = [];
  for (const part of name.split('/')) {
    if (part === '' || part === '.') continue;
    if (part === '..') throw new UnsafeLayerEntryError(name, '".." path component');
    parts.push(part);
  }
  return parts;
}

/**
 * A destination path given by kiln itself (COPY targets and the like): leading `/` means the image
 * root. Returns the components, or undefined for the root or a path with `..`.
 */
export function destinationComponents(path: string): string[] | undefined {
  if (path.includes('\0')) return undefined;
  const parts: string[] = [];
  for (const part of path.split('/')) {
    if (part === '' || part === '.') continue;
    if (part === '..') return undefined;
    parts.push(part);
  }
  return parts.length > 0 ? parts : undefined;
}
