/** A COPY/ADD layer as a tar stream: the plan fed to the deterministic entry writer. */
import { Readable } from 'node:stream';
import type { TarWriteOptions } from '../../oci/layer/index.js';
import { planCopy } from './plan.js';
import { copyLayerTar } from './tar-writer.js';
import type { CopyPlan, CopyRequest } from './types.js';

export interface CopyLayer {
  /** The uncompressed layer tar. Temporary files are removed once it closes (read to the end, or destroyed). */
  stream: Readable;
  plan: CopyPlan;
  /** With `contentDigest`: once the stream has been read to the end, the digest of what it copied, times left out. */
  contentDigest(): string | undefined;
}

/**
 * Plans the step and starts writing its layer. Times are clamped to the request's
 * `sourceDateEpoch`, and entries without a time of their own (created directories, heredocs) get it.
 */
export async function copyLayer(req: CopyRequest, options: Pick<TarWriteOptions, 'xattrs' | 'onWarning'> & { contentDigest?: boolean } = {}): Promise<CopyLayer> {
  const plan = await planCopy(req);
  // Entries made by the step itself (created parent directories, heredoc files) are made now, as
  // BuildKit makes them; with SOURCE_DATE_EPOCH the writer gives them that time instead.
  if (req.options?.sourceDateEpoch === undefined) {
    const now = Math.floor(Date.now() / 1000);
    for (const [i, e] of plan.entries.entries()) {
      if (e.mtime === undefined && e.source === undefined && e.type !== 'whiteout' && e.type !== 'opaque') plan.entries[i] = { ...e, mtime: now };
    }
  }
  let stream: Readable;
  let contentDigest: string | undefined;
  const { contentDigest: wantContent, ...tarOptions } = options;
  try {
    // The same bytes as writeTarEntries(plan.entries, ...), made for copies of many small files.
    const tar = copyLayerTar(plan.entries, {
      ...tarOptions,
      ...(wantContent ? { onContentDigest: (d: string) => (contentDigest = d) } : {}),
      ...(req.options?.sourceDateEpoch !== undefined ? { sourceDateEpoch: req.options.sourceDateEpoch } : {}),
      ...(req.signal ? { signal: req.signal } : {}),
    });
    stream = Readable.from(tar, { objectMode: false });
  } catch (err) {
    await plan.dispose();
    throw err;
  }
  stream.once('close', () => {
    void plan.dispose().catch(() => undefined);
  });
  return { stream, plan, contentDigest: () => contentDigest };
}

