/** Image names as archives record them: docker's familiar RepoTags, OCI ref names, containerd's full names. */
import { familiarString, formatReference, isValidReference, normalizeReference, type Reference } from '../reference.js';
import { Annotation, type Descriptor } from '../types.js';

/** A name as given (`busybox`, `docker.io/library/busybox:latest`) in the normalised form the store uses. */
export function normalizedOrUndefined(name: string | undefined): string | undefined {
  if (!name || !isValidReference(name)) return undefined;
  return formatReference(normalizeReference(name));
}

/**
 * The name an index.json entry gives its image: containerd's full-name annotation when present
 * (docker ≥25 and BuildKit put only the tag in `org.opencontainers.image.ref.name`), otherwise the
 * OCI ref name when it is a valid image reference (skopeo writes full names there when given one).
 */
export function nameOfIndexEntry(desc: Descriptor): string | undefined {
  return normalizedOrUndefined(desc.annotations?.[Annotation.containerdImageName]) ?? normalizedOrUndefined(desc.annotations?.[Annotation.refName]);
}

/** A name parsed and normalised; undefined when it is not a valid reference. */
export function referenceOf(name: string): Reference | undefined {
  return isValidReference(name) ? normalizeReference(name) : undefined;
}

/**
 * What `docker save` writes in RepoTags: the familiar `name:tag` (`busybox:latest`). A name with only
 * a digest has no tag and is left out, as docker leaves out canonical references.
 */
export function dockerRepoTag(name: string): string | undefined {
  const ref = referenceOf(name);
  if (!ref?.tag) return undefined;
  return familiarString({ domain: ref.domain, path: ref.path, tag: ref.tag });
}

/** Unique values in first-seen order. */
export function unique<T>(values: Iterable<T>): T[] {
  return [...new Set(values)];
}
