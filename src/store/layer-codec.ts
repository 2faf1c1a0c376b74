/**
 * The two layer operations the store needs from `oci/layer`: unpacking a layer tar into a snapshot
 * directory (whiteouts in overlay form: 0/0 char devices and the opaque xattr) and compressing an
 * uncompressed layer with kiln's deterministic settings. They sit behind this small interface so
 * tests and unusual hosts can supply their own; the default loads `oci/layer` on first use, so
 * commands that never unpack or compress do not load it.
 */
import type { Readable } from 'node:stream';

export interface LayerCodec {
  /** Unpacks an uncompressed layer tar into `dir` (which exists and is empty), consuming the stream. */
  extract(tar: Readable, dir: string): Promise<void>;
  /** A stream of `tar` compressed. */
  compress(tar: Readable, compression: 'gzip' | 'zstd'): Readable | Promise<Readable>;
}

let loaded: Promise<LayerCodec> | undefined;

export function defaultLayerCodec(): Promise<LayerCodec> {
  loaded ??= import('../oci/layer/index.js').then(({ extractLayer, compressLayer }) => ({
    extract: async (tar: Readable, dir: string) => {
      await extractLayer(tar, dir, { whiteouts: 'overlay' });
    },
    compress: (tar: Readable, compression: 'gzip' | 'zstd') => compressLayer(tar, compression).stream,
  }));
  return loaded;
}
