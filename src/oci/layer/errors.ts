/** Typed errors of the layer tar writer, extractor and compressors. */
import { KilnError, type KilnErrorOptions } from '../../errors.js';

/**
 * A layer entry that would write outside the extraction target: `..` components, absolute names,
 * a parent that resolves through a symlink out of the target, or a hardlink to a path outside it.
 * Nothing of the entry is written.
 */
export class UnsafeLayerEntryError extends KilnError {
  constructor(
    readonly entry: string,
    readonly reason: string,
    options: KilnErrorOptions = {},
  ) {
    super('UNSAFE_LAYER_ENTRY', `layer entry "${printable(entry)}" refused: ${reason}`, {
      hint: 'the layer tar is malformed or hostile; rebuild it, or do not use this image',
      ...options,
    });
  }
}

/** A layer tar kiln cannot read: corrupt headers, unsupported entry types, truncated data. */
export class LayerFormatError extends KilnError {
  constructor(
    message: string,
    readonly entry?: string,
    options: KilnErrorOptions = {},
  ) {
    super('LAYER_FORMAT', entry === undefined ? message : `layer entry "${printable(entry)}": ${message}`, {
      hint: 'the layer blob is corrupt or uses a tar feature kiln does not support',
      ...options,
    });
  }
}

/** A file of the tree being tarred that cannot be read, changed while it was read, or cannot be represented. */
export class LayerSourceError extends KilnError {
  constructor(
    readonly path: string,
    message: string,
    options: KilnErrorOptions = {},
  ) {
    super('LAYER_SOURCE', `${path}: ${message}`, options);
  }
}

/** Applying an entry failed on the file system (permission, ownership outside the id map, no space, ...). */
export class LayerExtractError extends KilnError {
  constructor(
    readonly entry: string,
    message: string,
    options: KilnErrorOptions = {},
  ) {
    super('LAYER_EXTRACT', `layer entry "${printable(entry)}": ${message}`, options);
  }
}

/** A compression kiln cannot produce or read here (e.g. no `zstd` program installed). */
export class CompressionError extends KilnError {
  constructor(message: string, options: KilnErrorOptions = {}) {
    super('COMPRESSION', message, options);
  }
}

/** Names in messages are untrusted: keep control characters out of terminals and logs. */
function printable(name: string): string {
  const clipped = name.length > 300 ? `${name.slice(0, 300)}…` : name;
  return clipped.replace(/[\u0000-\u001f\u007f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
}
