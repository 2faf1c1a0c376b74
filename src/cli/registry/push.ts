/** `kiln push`: docker's lines, driven by the push's events. */
import { openStoreForCommand } from '../store.js';
import { UsageError } from '../../errors.js';
import type { Image, ImageIndex } from '../../oci/image.js';
import { LayoutIndex } from '../../oci/layout/index.js';
import { isIndexMediaType } from '../../oci/mediatypes.js';
import { familiarString, normalizeReference } from '../../oci/reference.js';
import { pushImage, type PushEvent } from '../../registry/index.js';
import type { PushCommandOptions } from '../commands/push.js';
import { registryOptions, shortId } from './options.js';

export async function runPush(root: string, name: string, options: PushCommandOptions): Promise<void> {
  const reference = normalizeReference(name);
  if (reference.digest && reference.tag) throw new UsageError(`cannot push "${name}": give a tag or a digest, not both`);
  const out = (line: string) => {
    if (!options.quiet) process.stdout.write(`${line}\n`);
  };
  const store = await openStoreForCommand(root);
  const rec = await store.lookup(name);
  const image: Image | ImageIndex = isIndexMediaType(rec.mediaType)
    ? new LayoutIndex(store.layout, { digest: rec.digest, size: rec.size, mediaType: rec.mediaType })
    : await store.resolve(rec.digest);
  out(`The push refers to repository [${familiarString({ domain: reference.domain, path: reference.path })}]`);
  const onEvent = (e: PushEvent): void => {
    if (e.type !== 'blob' || e.kind !== 'layer') return;
    // Named by diffID as docker does: the one ID a layer has before and after compression.
    const id = shortId(e.diffID ?? e.digest);
    if (e.status === 'preparing') out(`${id}: Preparing`);
    else if (e.status === 'exists') out(`${id}: Layer already exists`);
    else if (e.status === 'mounted') out(`${id}: Mounted from ${e.from}`);
    else if (e.status === 'pushed') out(`${id}: Pushed`);
  };
  const result = await pushImage(image, reference, { ...registryOptions(options), store, onEvent });
  process.stdout.write(`${reference.tag ?? result.digest}: digest: ${result.digest} size: ${result.size}\n`);
}
