/** Layer tars: deterministic writing, safe extraction, whiteouts, and streaming compression. */
export {
  writeLayerTar,
  writeTarEntries,
  type LayerSourceMode,
  type LayerTarOptions,
  type LayerWarning,
  type TarEntrySpec,
  type TarWriteOptions,
  type XattrPolicy,
} from './writer.js';
export { extractLayer, type ExtractOptions, type ExtractResult, type ExtractWarning } from './extract.js';
export {
  compress,
  compressLayer,
  createCompressor,
  defaultGzipConcurrency,
  decompress,
  detectCompression,
  peekStream,
  DEFAULT_GZIP_CHUNK,
  DEFAULT_GZIP_LEVEL,
  DEFAULT_ZSTD_LEVEL,
  type CompressedLayer,
  type CompressOptions,
  type LayerDigests,
} from './compress.js';
export { WHITEOUT_META_PREFIX, WHITEOUT_OPAQUE, WHITEOUT_PREFIX, isOverlayXattr } from './paths.js';
export { CompressionError, LayerExtractError, LayerFormatError, LayerSourceError, UnsafeLayerEntryError } from './errors.js';
