/** Build cache export and import: registries, OCI layout directories, inline in the image. */
import type { BuildPlan } from '../dockerfile/instructions/index.js';
import type { ExportEvent } from './exporter.js';

export { CacheExporter, writeLayerCompressed, type ExportEvent, type ExportOptions, type ExportStep } from './exporter.js';
export { CacheImporter, type ImportOptions, type ImportedStep } from './importer.js';
export { CacheMediaType, INLINE_CACHE_FIELD, parseCacheConfig, type CacheConfig, type CacheRecordEntry } from './format.js';
export { DEFAULT_MOUNTS_MAX_SIZE, parseCacheFrom, parseCacheTo, type CacheFromSpec, type CacheMode, type CacheToSpec } from './spec.js';

/** The stages whose steps make the target's layers: the target and the stages it is FROM, in turn. */
export function finalStages(plan: BuildPlan): Set<number> {
  const out = new Set<number>();
  let i: number | undefined = plan.target;
  while (i !== undefined && !out.has(i)) {
    out.add(i);
    const base: BuildPlan['stages'][number]['base'] = plan.stages[i]!.base;
    i = base.kind === 'stage' ? base.index : undefined;
  }
  return out;
}

/** `12.3 MB pushed in 1.2s  [build 2/4] RUN make` */
export function describeTransfer(e: ExportEvent): string {
  const what = e.status === 'exists' ? 'already there' : e.status === 'mounted' ? 'mounted' : `${formatBytes(e.bytes)} ${e.status}`;
  return `${e.digest.slice(0, 19)} ${what} in ${(e.durationMs / 1000).toFixed(1)}s  ${e.step}`;
}

function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 ** 2) return `${(n / 1024).toFixed(1)} kB`;
  if (n < 1024 ** 3) return `${(n / 1024 ** 2).toFixed(1)} MB`;
  return `${(n / 1024 ** 3).toFixed(2)} GB`;
}
