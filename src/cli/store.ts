/**
 * Opening the store from a command. Commands that unpack, remove or collect snapshots (build, rmi,
 * prune) first enter kiln's user namespace when run by a normal user: snapshot files belong to the
 * user's subordinate ids, which only the namespace can touch. Commands that only read or add
 * blobs and index entries stay outside and start faster.
 */
import { openStore, type Store } from '../store/index.js';

export async function openStoreForCommand(root: string, options: { namespace?: boolean } = {}): Promise<Store> {
  if (!options.namespace) return openStore({ root });
  // Root, or already inside: only the id maps are read. The code that enters the namespace loads
  // when it must run; the rest of the sandbox loads when a step needs it.
  const { currentNamespace } = await import('../sandbox/namespace.js');
  const ns = currentNamespace() ?? (await (await import('../sandbox/userns.js')).ensureNamespace());
  if (!ns.squashed) return openStore({ root });
  // With a single-id mapping, unpacked files are owned by root and their real owners are kept
  // beside the snapshot, so the layers kiln writes still carry the image's ownership.
  const { squashedLayerCodec } = await import('../sandbox/squash.js');
  return openStore({ root, layerCodec: squashedLayerCodec() });
}
