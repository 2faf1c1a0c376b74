/** Failures of the image commands, worded as docker words them. */
import { KilnError, type KilnErrorOptions } from '../../errors.js';

/** An image reference that matches nothing in the store (`kiln: rmi: No such image: nothere:latest`). */
export class NoSuchImageError extends KilnError {
  constructor(
    readonly command: string,
    readonly ref: string,
    options: KilnErrorOptions = {},
  ) {
    super('IMAGE_NOT_FOUND', `${command}: No such image: ${ref}`, options);
  }
}

/** An image archive or rootfs tar that cannot be read, or whose content fails verification. */
export class ArchiveError extends KilnError {
  constructor(message: string, options: KilnErrorOptions = {}) {
    super('ARCHIVE', message, options);
  }
}

/** `rmi` by ID of an image that several names refer to, without `-f` (docker's wording). */
export class ImageReferencedError extends KilnError {
  constructor(readonly id: string) {
    super('IMAGE_CONFLICT', `conflict: unable to delete ${id} (must be forced) - image is referenced in multiple repositories`, {
      hint: 'remove it by name, or with -f to remove every name',
    });
  }
}
