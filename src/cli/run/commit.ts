/** `kiln commit CONTAINER [REF]`: prints the new image's ID. */
import { ContainerStore } from '../../run/containers.js';
import { normalizeName } from '../../oci/reference.js';
import { openStoreForCommand } from '../store.js';

export async function runCommit(root: string, ref: string, name: string | undefined, options: { author?: string; message?: string; change: string[] }): Promise<void> {
  // Check what the user typed before entering the namespace.
  const names = name ? [normalizeName(name)] : [];
  await ContainerStore.open(root).find(ref);
  const store = await openStoreForCommand(root, { namespace: true });
  const rec = await ContainerStore.open(root).find(ref);
  const { commitContainer } = await import('../../run/commit.js');
  const result = await commitContainer(store, rec, {
    names,
    changes: options.change,
    ...(options.author !== undefined ? { author: options.author } : {}),
    ...(options.message !== undefined ? { message: options.message } : {}),
  });
  process.stdout.write(`${result.id}\n`);
}
