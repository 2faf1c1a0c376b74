/**
 * The image a new container runs, as docker finds it: from the store, else pulled from its registry
 * (`--pull missing`, the default), always pulled first (`--pull always`), or never pulled
 * (`--pull never`). The pull's progress goes to stderr, so stdout stays the container's (or its ID).
 */
import { KilnError, UsageError } from '../../errors.js';
import { familiarString, parseReference } from '../../oci/reference.js';
import type { PullEvent } from '../../registry/index.js';
import type { Store } from '../../store/index.js';
import { Catalog, type StoredImage } from '../image/catalog.js';
import { NoSuchImageError } from '../image/errors.js';
import { displayRef } from '../image/names.js';
import { shortId } from '../registry/options.js';

export type PullPolicy = 'missing' | 'always' | 'never';

export function parsePullPolicy(value: string | undefined): PullPolicy {
  if (value === undefined) return 'missing';
  if (value === 'missing' || value === 'always' || value === 'never') return value;
  throw new UsageError(`invalid pull option: '${value}': must be one of "always", "missing" or "never"`, { exitCode: 125 });
}

export interface FindRunImageOptions {
  pull: PullPolicy;
  /** No pull progress (docker run -q). */
  quiet?: boolean;
}

/** The stored image `ref` names, pulled first as `policy` says. */
export async function findRunImage(store: Store, ref: string, options: FindRunImageOptions): Promise<StoredImage> {
  const shown = displayRef(ref);
  if (options.pull === 'always') {
    await pull(store, ref, options);
  } else {
    try {
      return (await new Catalog(store).find(ref, 'run', shown)).image;
    } catch (err) {
      if (!(err instanceof NoSuchImageError)) throw err;
      if (options.pull === 'never' || !pullable(ref)) {
        throw new KilnError('IMAGE_NOT_FOUND', `No such image: ${shown}`, { exitCode: 125, hint: `kiln pull ${ref}, or kiln build -t ${ref} .` });
      }
    }
    if (!options.quiet) process.stderr.write(`Unable to find image '${shown}' locally\n`);
    await pull(store, ref, options);
  }
  // A fresh catalog: the one above read the store's names before the pull.
  return (await new Catalog(store).find(ref, 'run', shown)).image;
}

/** A name a registry could know (an ID or a digest prefix typed by hand is not). */
function pullable(ref: string): boolean {
  try {
    parseReference(ref);
    return true;
  } catch {
    return false;
  }
}

async function pull(store: Store, ref: string, options: FindRunImageOptions): Promise<void> {
  const { pullImage } = await import('../../registry/index.js');
  const say = (line: string) => {
    if (!options.quiet) process.stderr.write(`${line}\n`);
  };
  const onEvent = (e: PullEvent) => {
    const line = progressLine(e);
    if (line) say(line);
  };
  // A failure here is kiln's before the container exists: the caller makes it docker's 125.
  const result = await pullImage(ref, store, { onEvent });
  say(`Digest: ${result.digest}`);
  say(`Status: ${result.upToDate ? 'Image is up to date for' : 'Downloaded newer image for'} ${familiarString(result.reference)}`);
}

/** docker's line for a pull event, or undefined for events it shows nothing for. */
function progressLine(e: PullEvent): string | undefined {
  if (e.type === 'resolving') {
    const r = e.reference;
    // docker names the repository by its path alone: `library/busybox`, `kiln/app`.
    return `${r.digest ?? r.tag ?? 'latest'}: Pulling from ${r.path}`;
  }
  if (e.type !== 'blob' || e.kind !== 'layer') return undefined;
  const id = shortId(e.digest);
  switch (e.status) {
    case 'exists':
      return `${id}: Already exists`;
    case 'downloading':
      return `${id}: Pulling fs layer`;
    case 'resumed':
      return `${id}: Retrying`;
    case 'done':
      return `${id}: Pull complete`;
    default:
      return undefined;
  }
}
