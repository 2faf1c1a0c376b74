/**
 * `kiln inspect`: `docker image inspect`'s JSON. The fields are docker's (API 1.50 shape, where
 * `Config` is the image config's own `config` object), filled from the stored image; `Descriptor`
 * is the manifest (or index) the store records, as docker shows it with the containerd store.
 */
import { throwCollected } from '../collected-errors.js';
import { writeInspectDocuments } from '../inspect-output.js';
import { openStoreForCommand } from '../store.js';
import { KilnError } from '../../errors.js';
import { parsePlatform } from '../../oci/platform.js';
import { Catalog, type StoredImage } from './catalog.js';
import { nameParts } from './names.js';

export interface InspectOptions {
  format?: string;
  platform?: string;
}

const ZERO_TIME = '0001-01-01T00:00:00Z';

/** The inspect document of one image. */
export function inspectDocument(info: StoredImage): Record<string, unknown> {
  const repoTags: string[] = [];
  const repoDigests: string[] = [];
  for (const stored of info.record.names) {
    const n = nameParts(stored);
    if (n.tag !== undefined || n.digest === undefined) repoTags.push(n.familiar);
    const digestRef = `${n.repository}@${n.digest ?? info.record.digest}`;
    if (!repoDigests.includes(digestRef)) repoDigests.push(digestRef);
  }
  const config = info.config;
  const extra = (config ?? {}) as { comment?: string; docker_version?: string };
  repoTags.sort();
  repoDigests.sort();
  const doc: Record<string, unknown> = {
    Id: info.id,
    RepoTags: repoTags,
    RepoDigests: repoDigests,
    Parent: '',
    Comment: extra.comment ?? '',
    Created: config?.created ?? ZERO_TIME,
    DockerVersion: extra.docker_version ?? '',
    Author: config?.author ?? '',
    Config: config?.config ?? {},
    Architecture: config?.architecture ?? '',
  };
  if (config?.variant) doc.Variant = config.variant;
  doc.Os = config?.os ?? '';
  if (config?.['os.version']) doc.OsVersion = config['os.version'];
  doc.Size = info.size;
  doc.RootFS = { Type: 'layers', Layers: config?.rootfs.diff_ids ?? [] };
  doc.Metadata = { LastTagTime: info.record.stored ?? ZERO_TIME };
  doc.Descriptor = { mediaType: info.record.mediaType, digest: info.record.digest, size: info.record.size };
  return doc;
}

/**
 * Prints a JSON array of every image found (or one `--format` line per image); a reference that
 * matches nothing is reported on stderr, and the exit status is 1, after the others are printed.
 */
export async function runInspect(root: string, refs: string[], options: InspectOptions): Promise<number> {
  const store = await openStoreForCommand(root);
  const catalog = new Catalog(store, options.platform ? parsePlatform(options.platform) : undefined);
  const docs: Array<Record<string, unknown>> = [];
  const errors: KilnError[] = [];
  for (const ref of refs) {
    try {
      const { image } = await catalog.find(ref, 'inspect');
      if (image.problem) throw image.problem;
      docs.push(inspectDocument(image));
    } catch (err) {
      if (!(err instanceof KilnError)) throw err;
      errors.push(err);
    }
  }
  writeInspectDocuments(docs, options.format);
  throwCollected(errors);
  return 0;
}
