/**
 * A stage's state while its instructions are dispatched: the image config being built, its layers,
 * the key of its filesystem, and the variable scope instructions expand against (the config's ENV
 * plus the ARGs in force, which RUN also sees as environment, as in BuildKit).
 */
import type { Digest } from '../oci/digest.js';
import type { Descriptor, Platform } from '../oci/types.js';
import { EnvList } from '../dockerfile/instructions/index.js';
import type { StageImage } from './image-config.js';

export interface LayerRef {
  /** The blob as stored (uncompressed for layers kiln made, as pulled for base layers). */
  desc: Descriptor;
  diffID: Digest;
}

export interface StageState {
  image: StageImage;
  layers: LayerRef[];
  /** Cache key of the filesystem: the base's, then each layer step's. */
  fsKey: Digest;
  env: EnvList;
  platform: Platform;
  /** The external image the stage started from, for the base.* annotations. */
  base?: { name: string; digest: Digest };
  /** An image's ONBUILD triggers, until the stage built on it has taken them. */
  triggers?: string[];
}

/** The variable scope an image config starts a stage with. */
export function envFromConfig(env: readonly string[] | undefined): EnvList {
  const list = new EnvList();
  for (const kv of env ?? []) {
    const eq = kv.indexOf('=');
    list.set(eq < 0 ? kv : kv.slice(0, eq), eq < 0 ? '' : kv.slice(eq + 1));
  }
  return list;
}
