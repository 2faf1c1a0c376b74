/** Typed failures of image archives (docker-archive, OCI archive and layout) and rootfs import/export. */
import { KilnError, type KilnErrorOptions } from '../../errors.js';
import type { Digest } from '../digest.js';
import { BlobVerificationError } from '../layout/errors.js';

/**
 * An archive kiln cannot read as an image archive: not a tar, truncated, corrupt compression, or a
 * malformed `manifest.json` / `index.json` / config. `where` names the archive (and the entry when
 * one is at fault) so the one-line message says what to look at.
 */
export class ArchiveFormatError extends KilnError {
  constructor(
    readonly where: string,
    message: string,
    options: KilnErrorOptions = {},
  ) {
    super('ARCHIVE_FORMAT', `${where}: ${message}`, {
      hint: 'the file is not a docker-archive, OCI archive or OCI layout, or it is damaged; save or copy the image again',
      ...options,
    });
  }
}

/** An entry that `manifest.json`, `repositories` or `index.json` names but the archive does not contain. */
export class ArchiveEntryMissingError extends KilnError {
  constructor(
    readonly where: string,
    readonly entry: string,
    what: string,
    options: KilnErrorOptions = {},
  ) {
    super('ARCHIVE_ENTRY_MISSING', `${where}: ${what} "${printable(entry)}" is not in the archive`, {
      hint: 'the archive is incomplete or was cut short; save or copy the image again',
      ...options,
    });
  }
}

/**
 * A layer whose uncompressed bytes do not hash to the diffID the image config names for it. A
 * BlobVerificationError (the content does not match what names it), with a message that says which
 * check failed.
 */
export class DiffIDMismatchError extends BlobVerificationError {
  constructor(
    readonly diffID: Digest,
    readonly layer: string,
    where: string,
    actualDigest: Digest,
    options: KilnErrorOptions = {},
  ) {
    super(diffID, where, { actualDigest }, options);
    this.message = `${where}: layer ${printable(layer)} does not unpack to the diffID its config names (${diffID}); it unpacks to ${actualDigest}`;
  }
}

/** Writing an archive or layout failed for a reason of the input images (not of the destination). */
export class ArchiveWriteError extends KilnError {
  constructor(message: string, options: KilnErrorOptions = {}) {
    super('ARCHIVE_WRITE', message, options);
  }
}

/** A rootfs source for `import` that kiln cannot use (missing, unreadable, neither a tar nor a directory). */
export class RootfsSourceError extends KilnError {
  constructor(
    readonly source: string,
    message: string,
    options: KilnErrorOptions = {},
  ) {
    super('ROOTFS_SOURCE', `${source}: ${message}`, options);
  }
}

/** Names in messages come from untrusted archives: keep control characters out of terminals. */
export function printable(name: string): string {
  const clipped = name.length > 300 ? `${name.slice(0, 300)}…` : name;
  return clipped.replace(/[\u0000-\u001f\u007f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
}
