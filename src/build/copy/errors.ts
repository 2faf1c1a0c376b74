/** Typed failures of COPY and ADD. Messages keep BuildKit's wording where users search for it. */
import { KilnError, type KilnErrorOptions } from '../../errors.js';

/** A COPY/ADD that cannot be carried out as written (bad flag value, impossible destination, ...). */
export class CopyError extends KilnError {
  constructor(code: string, message: string, options: KilnErrorOptions = {}) {
    super(code, message, options);
  }
}

/**
 * A source path that does not exist, worded as buildx prints it:
 * `failed to compute cache key: failed to calculate checksum of ref <ref>: "/missing": not found`.
 */
export class SourceNotFoundError extends CopyError {
  constructor(
    readonly path: string,
    readonly ref: string,
    hint: string,
  ) {
    super('COPY_SOURCE_NOT_FOUND', `failed to compute cache key: failed to calculate checksum of ref ${ref}: "${path}": not found`, { hint });
  }
}

/** A download whose content does not have the digest given with --checksum. */
export class ChecksumMismatchError extends CopyError {
  constructor(
    readonly url: string,
    readonly got: string,
    readonly expected: string,
  ) {
    super('ADD_CHECKSUM_MISMATCH', `digest mismatch for ${url}: ${got} (expected: ${expected})`, {
      hint: 'the remote content changed or the --checksum value is wrong',
    });
  }
}

/** An archive entry that would land outside the destination, or that a layer cannot carry. */
export class UnsafeArchiveError extends CopyError {
  constructor(
    readonly archive: string,
    readonly entry: string,
    reason: string,
  ) {
    super('ADD_UNSAFE_ARCHIVE', `refusing to unpack ${archive}: ${reason}`, {
      hint: 'the archive is malformed or hostile; use --unpack=false to add it as a file',
    });
    void entry;
  }
}

/** A program ADD needs (git, xz, bzip2, zstd) that is not installed. */
export class MissingToolError extends CopyError {
  constructor(readonly program: string, debianPackage: string, what: string) {
    super('MISSING_TOOL', `${what} needs the ${program} program, which is not installed`, {
      hint: `install it (Debian: apt-get install ${debianPackage})`,
    });
  }
}
