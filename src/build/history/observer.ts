/**
 * What a build keeps about its cache misses: for a COPY from the context, the per-file digests of
 * what it read (so the next build can name the changed files); with `explain`, the reasons of the
 * miss, emitted as a `vertex-miss` event.
 */
import type { ContextManifest } from '../../context/index.js';
import type { BuildEngine, MissObserver } from '../engine.js';
import { explainMiss } from '../explain.js';
import { hasManifest, readManifest, writeManifest } from './manifests.js';
import type { BuildRecord } from './record.js';

export class HistoryObserver implements MissObserver {
  private readonly argNames: Set<string>;
  private readonly manifests = new Map<string, Promise<ContextManifest | undefined>>();
  private readonly writes: Array<Promise<void>> = [];

  constructor(
    private readonly engine: BuildEngine,
    private readonly storeRoot: string,
    private readonly previous: Promise<BuildRecord | undefined>,
    private readonly explain: boolean,
  ) {
    this.argNames = new Set<string>();
    for (const a of engine.df.metaArgs) for (const d of a.args) this.argNames.add(d.key);
    for (const st of engine.df.stages) for (const ins of st.instructions) if (ins.kind === 'ARG') for (const d of ins.args) this.argNames.add(d.key);
  }

  /** Per-file digests of one context source as it is now (computed once per path). */
  private manifestNow(path: string): Promise<ContextManifest | undefined> {
    let p = this.manifests.get(path);
    if (!p) {
      p = this.engine.executors
        .context()
        .then((ctx) => ctx.manifest(path, { followLinks: true, wildcard: true }))
        .catch(() => undefined);
      this.manifests.set(path, p);
    }
    return p;
  }

  /** Waits for the file lists being written. */
  async settle(): Promise<void> {
    await Promise.all(this.writes);
  }

  async missed(step: Parameters<MissObserver['missed']>[0]): Promise<void> {
    const { record, vertex } = step;
    if ((record.kind === 'copy' || record.kind === 'add') && record.from === 'context') {
      // Off the step's path: the step runs while its file list is written.
      for (const src of record.sources) {
        if (!src.digest) continue;
        const write = async (): Promise<void> => {
          if (await hasManifest(this.storeRoot, src.digest)) return;
          const m = await this.manifestNow(src.path);
          if (m) await writeManifest(this.storeRoot, src.digest, m);
        };
        this.writes.push(write().catch(() => undefined));
      }
    }
    if (!this.explain) return;
    const stepNames = new Map<string, string>();
    for (const k of this.engine.keyed.values()) stepNames.set(k.key, k.name);
    const reasons = await explainMiss({
      record,
      name: vertex.info.name,
      stage: vertex.info.stage,
      ordinal: step.ordinal,
      ...(step.cacheDisabled ? { cacheDisabled: step.cacheDisabled } : {}),
      previous: await this.previous,
      bases: this.engine.bases,
      stepNames,
      argNames: this.argNames,
      manifestNow: (p) => this.manifestNow(p),
      manifestThen: (d) => readManifest(this.storeRoot, d),
    });
    vertex.miss(reasons);
  }
}
