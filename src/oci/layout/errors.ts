/** Typed failures of OCI image layouts: corrupt or missing blobs, unreadable layouts, unknown refs. */
import { KilnError, type KilnErrorOptions } from '../../errors.js';
import type { Digest } from '../digest.js';

/**
 * A blob whose content does not match the digest or size that names it. Raised while writing (the
 * content is refused and nothing is left behind) and while reading (the stream fails before it ends).
 */
export class BlobVerificationError extends KilnError {
  constructor(
    readonly digest: Digest,
    readonly where: string,
    readonly problem: { actualDigest?: Digest; expectedSize?: number; actualSize?: number },
    options: KilnErrorOptions = {},
  ) {
    const parts: string[] = [];
    if (problem.actualDigest && problem.actualDigest !== digest) parts.push(`content hashes to ${problem.actualDigest}`);
    if (problem.expectedSize !== undefined && problem.actualSize !== undefined && problem.expectedSize !== problem.actualSize) {
      parts.push(`size is ${problem.actualSize} bytes, expected ${problem.expectedSize}`);
    }
    super('BLOB_VERIFY', `blob ${digest} in ${where} does not match its descriptor: ${parts.join('; ') || 'content mismatch'}`, {
      hint: 'the source is corrupt or the descriptor is wrong; fetch or rebuild the image',
      ...options,
    });
  }
}

export class BlobNotFoundError extends KilnError {
  constructor(readonly digest: Digest, readonly where: string, options: KilnErrorOptions = {}) {
    super('BLOB_NOT_FOUND', `blob ${digest} is missing from ${where}`, {
      hint: 'the layout is incomplete; copy the image into it again',
      ...options,
    });
  }
}

/** A directory that is not a usable OCI image layout, or a malformed document inside one. */
export class LayoutError extends KilnError {
  constructor(readonly where: string, message: string, options: KilnErrorOptions = {}) {
    super('OCI_LAYOUT', `${where}: ${message}`, options);
  }
}

/** A ref name (or digest) that the layout's index.json does not list. */
export class RefNotFoundError extends KilnError {
  constructor(readonly ref: string, readonly where: string, options: KilnErrorOptions = {}) {
    super('REF_NOT_FOUND', `no image named "${ref}" in ${where}`, options);
  }
}

/** A layer compression this Node runtime cannot decode. */
export class UnsupportedCompressionError extends KilnError {
  constructor(readonly mediaType: string, options: KilnErrorOptions = {}) {
    super('UNSUPPORTED_COMPRESSION', `cannot decompress layers of type ${mediaType}`, {
      hint: 'zstd needs Node.js 22.15 or newer; gzip and uncompressed layers always work',
      ...options,
    });
  }
}
