/** `kiln history`: the image's history entries, newest first, with the size of each entry's layer. */
import { openStoreForCommand } from '../store.js';
import { Catalog, type StoredImage } from './catalog.js';
import { displayRef } from './names.js';
import { renderList } from './template.js';
import { createdSince, ellipsis, humanSize, parseCreated, rfc3339, shortId } from './units.js';

export interface HistoryOptions {
  human: boolean;
  quiet?: boolean;
  trunc: boolean;
  format?: string;
}

export interface HistoryRow {
  id: string;
  created: Date | undefined;
  createdBy: string;
  size: number;
  comment: string;
}

const HEADERS: Record<string, string> = {
  ID: 'IMAGE',
  CreatedSince: 'CREATED',
  CreatedAt: 'CREATED AT',
  CreatedBy: 'CREATED BY',
  Size: 'SIZE',
  Comment: 'COMMENT',
};

/**
 * Rows newest first. Entries marked `empty_layer` have no layer (size 0); the others take the
 * image's layers in order. Only the newest row is the image itself; the rest are `<missing>`, as
 * docker shows layers that are not images of their own. An image without history gets one row per
 * layer, so its layers are still visible.
 */
export function historyRows(image: StoredImage): HistoryRow[] {
  const config = image.config!;
  const entries = config.history?.length
    ? config.history
    : image.layers.map(() => ({ created: config.created, created_by: '', comment: '', empty_layer: false }));
  let layer = 0;
  const rows = entries.map((h) => {
    const size = h.empty_layer ? 0 : (image.layers[layer++]?.unpacked ?? 0);
    return { id: '<missing>', created: parseCreated(h.created), createdBy: h.created_by ?? '', size, comment: h.comment ?? '' };
  });
  rows.reverse();
  if (rows.length) rows[0]!.id = image.id;
  return rows;
}

export async function runHistory(root: string, ref: string, options: HistoryOptions): Promise<void> {
  const store = await openStoreForCommand(root);
  const { image } = await new Catalog(store).find(ref, 'history', displayRef(ref));
  if (image.problem) throw image.problem;
  const now = Date.now();
  const contexts = historyRows(image).map((r) => {
    const createdBy = r.createdBy.replace(/\t/g, ' ');
    return {
      ID: r.id === '<missing>' || !options.trunc ? r.id : shortId(r.id),
      CreatedSince: options.human ? createdSince(r.created, now) : rfc3339(r.created),
      CreatedAt: rfc3339(r.created),
      CreatedBy: options.trunc ? ellipsis(createdBy, 45) : createdBy,
      Size: options.human ? humanSize(r.size, 3) : String(r.size),
      Comment: r.comment,
    };
  });
  const format = options.quiet ? '{{.ID}}' : options.format;
  process.stdout.write(
    renderList(format, contexts, { table: 'table {{.ID}}\t{{.CreatedSince}}\t{{.CreatedBy}}\t{{.Size}}\t{{.Comment}}', headers: HEADERS }),
  );
}
