/** Values shared by the archive readers and writers. */
import type { Image } from '../image.js';

export interface NamedImage {
  image: Image;
  /** Normalised names, e.g. `docker.io/library/busybox:latest`. */
  names: string[];
}

export type ArchiveFormat = 'docker' | 'oci';
