/**
 * Image formats in and out: docker-archive and OCI archive/layout readers and writers, `import` of a
 * root filesystem, and export of an image's root filesystem.
 */
export type { ArchiveFormat, NamedImage } from './types.js';
export { readImageArchive, type ImageArchive, type ReadArchiveOptions } from './read.js';
export {
  writeDockerArchive,
  writeOciArchive,
  writeOciLayoutDir,
  type ArchiveStreamOptions,
  type DockerArchiveOptions,
  type OciArchiveOptions,
  type OciWriteOptions,
} from './write.js';
export type { LayerCompressionOptions } from './convert.js';
export { importRootfs, type ImportOptions, type ImportedImage } from './import.js';
export { exportRootfs, type ExportRootfsOptions, type RootfsDestination } from './export.js';
export { ArchiveEntryMissingError, ArchiveFormatError, ArchiveWriteError, DiffIDMismatchError, RootfsSourceError } from './errors.js';
