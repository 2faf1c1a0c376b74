/** Stored image names shown as docker shows them: `busybox:latest`, not `docker.io/library/busybox:latest`. */
import { familiarString, formatReference, parseReference, type Reference } from '../../oci/reference.js';

export interface NameParts {
  /** `busybox`, `kiln-test/busybox`, `127.0.0.1:5000/app` (or a foreign name verbatim). */
  repository: string;
  tag: string | undefined;
  digest: string | undefined;
  /** The whole name in familiar form: `busybox:latest`, `app@sha256:…`. */
  familiar: string;
}

function parsedIfNormalized(stored: string): Reference | undefined {
  try {
    const ref = parseReference(stored);
    // Names other tools wrote into the layout (`skopeo copy … oci:<root>:mytag`) are not in the
    // normalised form kiln records; they are shown verbatim rather than reinterpreted.
    return formatReference(ref) === stored ? ref : undefined;
  } catch {
    return undefined;
  }
}

export function nameParts(stored: string): NameParts {
  const ref = parsedIfNormalized(stored);
  if (!ref) return { repository: stored, tag: undefined, digest: undefined, familiar: stored };
  return {
    repository: familiarString({ domain: ref.domain, path: ref.path }),
    tag: ref.tag,
    digest: ref.digest,
    familiar: familiarString(ref),
  };
}

/** The familiar form of a stored name (verbatim when it is not a normalised reference). */
export function familiar(stored: string): string {
  return nameParts(stored).familiar;
}

/** A name the user typed, as docker echoes it in errors: `nothere` → `nothere:latest`. */
export function displayRef(input: string): string {
  try {
    const ref = parseReference(input);
    return familiarString(ref.tag === undefined && ref.digest === undefined ? { ...ref, tag: 'latest' } : ref);
  } catch {
    return input;
  }
}
