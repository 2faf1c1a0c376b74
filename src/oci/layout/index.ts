/** OCI image layouts: reading them as Image values and writing images into them. */
export { BlobNotFoundError, BlobVerificationError, LayoutError, RefNotFoundError, UnsupportedCompressionError } from './errors.js';
export { fsyncDir, publishNoReplace, tempName, writeFileAtomic } from './fs.js';
export {
  LAYOUT_VERSION,
  OciLayout,
  emptyIndex,
  parseIndex,
  withManifest,
  type BlobSource,
  type OpenLayoutOptions,
  type WriteBlobOptions,
  type WrittenBlob,
} from './layout.js';
export { LayoutImage, LayoutIndex, LayoutLayer, LayoutRootIndex, imageFor, resolveLayoutRef } from './image.js';
export { memoryImage, type MemoryLayerInput } from './memory.js';
export { VerifyingStream } from './verify.js';
export { writeImage, writeImageIndex, type WriteImageOptions } from './write.js';
