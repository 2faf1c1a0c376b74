/** Typed failures of the image store. */
import { KilnError, type KilnErrorOptions } from '../errors.js';

export class ImageNotFoundError extends KilnError {
  constructor(readonly ref: string, options: KilnErrorOptions = {}) {
    super('IMAGE_NOT_FOUND', `no such image: ${ref}`, { hint: 'list the stored images with `kiln images`', ...options });
  }
}

export class AmbiguousImageError extends KilnError {
  constructor(readonly ref: string, readonly matches: string[]) {
    super('IMAGE_AMBIGUOUS', `"${ref}" matches ${matches.length} images (${matches.slice(0, 4).join(', ')}${matches.length > 4 ? ', …' : ''})`, {
      hint: 'give more digits of the image ID or use a name',
    });
  }
}

/** `rmi` of an image ID that several names still point at (Docker refuses the same way). */
export class ImageConflictError extends KilnError {
  constructor(readonly ref: string, readonly names: string[]) {
    super('IMAGE_CONFLICT', `unable to delete ${ref}: the image is referenced by ${names.length} names (${names.join(', ')})`, {
      hint: 'remove it by name, or force the removal of every name',
    });
  }
}

export class StoreLockError extends KilnError {
  constructor(readonly root: string, message: string, options: KilnErrorOptions = {}) {
    super('STORE_LOCKED', `${root}: ${message}`, {
      hint: 'another kiln process holds the store lock; wait for it, or remove store.lock if no kiln process is running',
      ...options,
    });
  }
}

export class StoreError extends KilnError {
  constructor(readonly root: string, message: string, options: KilnErrorOptions = {}) {
    super('STORE', `${root}: ${message}`, options);
  }
}
