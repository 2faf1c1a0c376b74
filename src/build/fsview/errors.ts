/** Failures of the read-only tree views. */
import { KilnError, type KilnErrorOptions } from '../../errors.js';

export type FSErrno = 'ENOENT' | 'ENOTDIR' | 'EISDIR' | 'ELOOP' | 'EINVAL' | 'EFBIG' | 'EIO';

/** A path of a view that cannot be read as asked (missing, wrong type, symlink loop, unreadable). */
export class FSViewError extends KilnError {
  constructor(
    readonly errno: FSErrno,
    readonly path: string,
    message: string,
    options: KilnErrorOptions = {},
  ) {
    super('FSVIEW', `${message}: ${path}`, options);
  }
}

/**
 * A symlink of a confined tree (the build context) whose target leads out of it. BuildKit would
 * quietly re-root such a link inside the context; kiln refuses it so that a COPY never copies
 * something other than what the link names.
 */
export class OutsideRootError extends KilnError {
  constructor(
    readonly path: string,
    readonly target: string,
    readonly rootLabel: string,
  ) {
    super('OUTSIDE_ROOT', `${path} is a symlink to "${target}", which is outside the ${rootLabel}`, {
      hint: `symlinks followed by COPY/ADD must stay inside the ${rootLabel}; copy the target into it or use a relative link`,
    });
  }
}

/** A layer directory of a layered view that does not exist or is not a directory. */
export class LayerDirError extends KilnError {
  constructor(readonly dir: string, message: string, options: KilnErrorOptions = {}) {
    super('FSVIEW_LAYER', `${dir}: ${message}`, options);
  }
}
