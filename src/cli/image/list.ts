/** `kiln images`: docker's image table, `-q`, `--digests`, `--no-trunc`, `--filter`, `--format`. */
import { openStoreForCommand } from '../store.js';
import { Catalog, type StoredImage } from './catalog.js';
import { danglingFilter, labelsMatch, parseFilters, pathMatch, type Filters } from './filters.js';
import { nameParts } from './names.js';
import { renderList } from './template.js';
import { createdSince, goTimeString, humanSize, shortId } from './units.js';

export interface ImagesOptions {
  all?: boolean;
  quiet?: boolean;
  digests?: boolean;
  trunc: boolean;
  filter?: string[];
  format?: string;
}

const HEADERS: Record<string, string> = {
  Repository: 'REPOSITORY',
  Tag: 'TAG',
  Digest: 'DIGEST',
  ID: 'IMAGE ID',
  CreatedSince: 'CREATED',
  CreatedAt: 'CREATED AT',
  Size: 'SIZE',
  VirtualSize: 'VIRTUAL SIZE',
  SharedSize: 'SHARED SIZE',
  UniqueSize: 'UNIQUE SIZE',
  Containers: 'CONTAINERS',
};

interface Row {
  repository: string;
  tag: string;
  image: StoredImage;
}

export async function runImages(root: string, reference: string | undefined, options: ImagesOptions): Promise<void> {
  const filters = parseFilters(options.filter ?? [], ['dangling', 'reference', 'label', 'before', 'since']);
  if (reference) filters.set('reference', [...(filters.get('reference') ?? []), reference]);
  const store = await openStoreForCommand(root);
  const catalog = new Catalog(store);
  const images = await selectImages(catalog, filters);
  const rows = images.flatMap((image) => rowsOf(image, filters));
  const now = Date.now();
  const contexts = rows.map((r) => ({
    Containers: 'N/A',
    CreatedAt: goTimeString(r.image.created),
    CreatedSince: createdSince(r.image.created, now),
    Digest: r.image.record.digest,
    ID: options.trunc ? shortId(r.image.id) : r.image.id,
    Repository: r.repository,
    SharedSize: 'N/A',
    Size: humanSize(r.image.size, 3),
    Tag: r.tag,
    UniqueSize: 'N/A',
    VirtualSize: humanSize(r.image.size, 4),
  }));
  const table = options.digests
    ? 'table {{.Repository}}\t{{.Tag}}\t{{.Digest}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}'
    : 'table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}';
  const format = options.quiet ? '{{.ID}}' : options.format;
  process.stdout.write(renderList(format, contexts, { table, headers: HEADERS }));
}

async function selectImages(catalog: Catalog, filters: Filters): Promise<StoredImage[]> {
  let images = await catalog.all();
  const dangling = danglingFilter(filters);
  if (dangling !== undefined) images = images.filter((i) => i.record.dangling === dangling);
  if (filters.has('label')) images = images.filter((i) => labelsMatch(filters, i.config?.config?.Labels));
  for (const [key, keep] of [
    ['before', (t: number, ref: number) => t < ref],
    ['since', (t: number, ref: number) => t > ref],
  ] as const) {
    for (const ref of filters.get(key) ?? []) {
      const pivot = (await catalog.find(ref, 'images')).image.created?.getTime() ?? 0;
      images = images.filter((i) => keep(i.created?.getTime() ?? 0, pivot));
    }
  }
  return images;
}

/** One row per repository:tag (a dangling image is one `<none> <none>` row), as docker lists them. */
function rowsOf(image: StoredImage, filters: Filters): Row[] {
  const patterns = filters.get('reference');
  const rows: Row[] = [];
  const tagged = new Set<string>();
  for (const stored of image.record.names) {
    const n = nameParts(stored);
    if (patterns && !patterns.some((p) => pathMatch(p, n.familiar) || pathMatch(p, n.repository))) continue;
    if (n.tag !== undefined) {
      rows.push({ repository: n.repository, tag: n.tag, image });
      tagged.add(n.repository);
    }
  }
  // Names by digest only (`repo@sha256:…`) show as `<none>` tags, unless the repository has a tag row.
  for (const stored of image.record.names) {
    const n = nameParts(stored);
    if (n.tag !== undefined || tagged.has(n.repository)) continue;
    if (patterns && !patterns.some((p) => pathMatch(p, n.familiar) || pathMatch(p, n.repository))) continue;
    rows.push({ repository: n.repository, tag: '<none>', image });
    tagged.add(n.repository);
  }
  if (image.record.dangling && !patterns) rows.push({ repository: '<none>', tag: '<none>', image });
  return rows.sort((a, b) => a.repository.localeCompare(b.repository) || a.tag.localeCompare(b.tag));
}
