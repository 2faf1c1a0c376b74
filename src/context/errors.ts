import { KilnError, type KilnErrorOptions } from '../errors.js';

/** A path a build step names (COPY source, wildcard prefix) that is not part of the filtered context. */
export class ContextPathNotFoundError extends KilnError {
  constructor(
    /** The path as it was asked for. */
    readonly path: string,
    options: KilnErrorOptions = {},
  ) {
    super('CONTEXT_PATH_NOT_FOUND', `${JSON.stringify(path)} not found in the build context`, {
      hint: 'check the path, and that .dockerignore does not exclude it',
      ...options,
    });
  }
}

/**
 * Following a symlink of the context would leave the context: its target climbs above the context
 * root with `..`. Such links are legal in the context (they are copied as links); only following
 * them is refused.
 */
export class ContextSymlinkEscapeError extends KilnError {
  constructor(
    /** The link whose target leaves the context, relative to the context root. */
    readonly link: string,
    /** Its target, as stored in the link. */
    readonly target: string,
    options: KilnErrorOptions = {},
  ) {
    super('CONTEXT_SYMLINK_ESCAPE', `symlink ${JSON.stringify(link)} -> ${JSON.stringify(target)} points outside the build context`, {
      hint: 'a build can only follow symlinks that stay inside the context; copy the link itself or the real file',
      ...options,
    });
  }
}

/** Resolution met more symlinks than BuildKit allows (a loop, most likely). */
export class ContextSymlinkLoopError extends KilnError {
  constructor(
    readonly path: string,
    options: KilnErrorOptions = {},
  ) {
    super('CONTEXT_SYMLINK_LOOP', `too many levels of symbolic links resolving ${JSON.stringify(path)} in the build context`, options);
  }
}

/** A malformed wildcard (`[` without `]`, trailing `\`), which Go's `path.Match` rejects. */
export class ContextPatternError extends KilnError {
  constructor(
    readonly pattern: string,
    options: KilnErrorOptions = {},
  ) {
    super('CONTEXT_PATTERN', `invalid wildcard ${JSON.stringify(pattern)}: syntax error in pattern`, options);
  }
}
