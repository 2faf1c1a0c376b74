/**
 * Why a step missed the cache, in words: its key record is compared with the record of the same step
 * in the last build of the same target (read from the build records on disk, so it works across
 * processes). Each differing component becomes one reason: `ARG VERSION changed (1.2 -> 1.3)`,
 * `COPY . /app: 3 files changed: src/a.ts, src/b.ts, package.json`, `base image X changed digest`.
 */
import type { ContextManifest } from '../context/index.js';
import type { CopyKey, RunKey, StepKey } from './cache-key.js';
import type { BaseEntry, BuildRecord, StepEntry } from './history/record.js';

export interface MissInput {
  /** The step as this build keys it. */
  record: StepKey;
  name: string;
  stage: string | undefined;
  ordinal: number;
  /** Set when the cache was not consulted: `--no-cache`, `--no-cache-filter build`. */
  cacheDisabled?: string;
  previous: BuildRecord | undefined;
  /** This build's base images by key digest, and its steps' names by key digest. */
  bases: Record<string, BaseEntry>;
  stepNames: Map<string, string>;
  /** Names declared by ARG in the Dockerfile (so `VERSION=1.3` in a RUN's environment reads as an ARG). */
  argNames: ReadonlySet<string>;
  /** Per-file digests of a context source now, and as the previous build saw it. */
  manifestNow?: (path: string) => Promise<ContextManifest | undefined>;
  manifestThen?: (sourceDigest: string) => Promise<ContextManifest | undefined>;
}

const FILES_NAMED = 10;

/** The previous build's step that corresponds to this one: same stage and position, else same name. */
export function matchStep(previous: BuildRecord, stage: string | undefined, ordinal: number, name: string): StepEntry | undefined {
  const keyed = previous.steps.filter((s) => s.record);
  return keyed.find((s) => (s.stage ?? '') === (stage ?? '') && s.ordinal === ordinal) ?? keyed.find((s) => s.name === name);
}

export async function explainMiss(input: MissInput): Promise<string[]> {
  if (input.cacheDisabled) return [input.cacheDisabled];
  const prev = input.previous && matchStep(input.previous, input.stage, input.ordinal, input.name);
  if (!prev?.record) return ['first build of this step'];
  const before = prev.record;
  const now = input.record;
  if (before.kind !== now.kind) return [`instruction changed (${instructionOf(prev.name)} -> ${instructionOf(input.name)})`];
  const reasons: string[] = [];
  if (before.platform !== now.platform) reasons.push(`platform changed (${before.platform} -> ${now.platform})`);
  if (before.parent !== now.parent) reasons.push(parentReason(input, before.parent, now.parent));
  switch (now.kind) {
    case 'run':
      reasons.push(...runReasons(before as RunKey, now, input.argNames));
      break;
    case 'copy':
    case 'add':
      reasons.push(...(await copyReasons(before as CopyKey, now, input)));
      break;
    case 'mkdir': {
      const b = before as typeof now;
      if (b.path !== now.path) reasons.push(`directory changed (${b.path} -> ${now.path})`);
      if (b.user !== now.user) reasons.push(`USER changed (${b.user || 'root'} -> ${now.user || 'root'})`);
      break;
    }
  }
  if (before.epoch !== now.epoch) reasons.push(`SOURCE_DATE_EPOCH changed (${before.epoch ?? 'unset'} -> ${now.epoch ?? 'unset'})`);
  // Same record, yet no cache entry: the entry was pruned (or this store never had it).
  if (reasons.length === 0) reasons.push(prev.key ? 'cache record was pruned since the last build' : 'no cache record for this step');
  return reasons;
}

function parentReason(input: MissInput, before: string, now: string): string {
  const baseNow = input.bases[now];
  const baseThen = input.previous?.bases[before];
  if (baseNow && baseThen) {
    if (baseNow.ref === baseThen.ref) return `base image ${baseNow.ref} changed digest (${short(baseThen.digest)} -> ${short(baseNow.digest)})`;
    return `base image changed (${baseThen.ref} -> ${baseNow.ref})`;
  }
  const parentName = input.stepNames.get(now);
  return parentName ? `previous step changed: ${parentName}` : 'previous step changed';
}

function runReasons(before: RunKey, now: RunKey, argNames: ReadonlySet<string>): string[] {
  const out: string[] = [];
  const envBefore = toMap(before.env);
  const envNow = toMap(now.env);
  for (const name of new Set([...envBefore.keys(), ...envNow.keys()])) {
    const a = envBefore.get(name);
    const b = envNow.get(name);
    if (a === b) continue;
    const what = argNames.has(name) ? 'ARG' : 'ENV';
    out.push(`${what} ${name} changed (${a ?? 'unset'} -> ${b ?? 'unset'})`);
  }
  if (JSON.stringify(before.args) !== JSON.stringify(now.args)) out.push(`command changed (${clip(before.args.join(' '))} -> ${clip(now.args.join(' '))})`);
  if (before.user !== now.user) out.push(`USER changed (${before.user || 'root'} -> ${now.user || 'root'})`);
  if (before.workdir !== now.workdir) out.push(`WORKDIR changed (${before.workdir} -> ${now.workdir})`);
  if (before.network !== now.network) out.push(`network changed (${before.network} -> ${now.network})`);
  if (before.security !== now.security) out.push(`security changed (${before.security} -> ${now.security})`);
  if (before.script?.digest !== now.script?.digest) out.push('heredoc script changed');
  if (JSON.stringify(before.mounts) !== JSON.stringify(now.mounts)) {
    const n = Math.max(before.mounts.length, now.mounts.length);
    for (let i = 0; i < n; i++) {
      const a = before.mounts[i];
      const b = now.mounts[i];
      if (JSON.stringify(a) === JSON.stringify(b)) continue;
      const target = String(b?.target ?? a?.target ?? '?');
      if (a && b && a.content !== b.content) out.push(`--mount target=${target}: content changed`);
      else if (a && b && a.fromKey !== b.fromKey) out.push(`--mount target=${target}: source stage changed`);
      else out.push(`--mount target=${target} changed`);
    }
  }
  return out;
}

async function copyReasons(before: CopyKey, now: CopyKey, input: MissInput): Promise<string[]> {
  const out: string[] = [];
  const what = instructionOf(input.name);
  if (before.from !== now.from) out.push(`${what}: source stage changed`);
  const thenByPath = new Map(before.sources.map((s) => [s.path, s.digest]));
  const changedSources = now.sources.filter((s) => thenByPath.get(s.path) !== s.digest);
  const addedSources = now.sources.filter((s) => !thenByPath.has(s.path)).map((s) => s.path);
  const removedSources = before.sources.filter((s) => !now.sources.some((n) => n.path === s.path)).map((s) => s.path);
  if (addedSources.length || removedSources.length) {
    out.push(`${what}: sources changed (${before.sources.map((s) => s.path).join(' ')} -> ${now.sources.map((s) => s.path).join(' ')})`);
  } else if (now.from === 'context' && changedSources.length) {
    const files = new Set<string>();
    let known = true;
    for (const src of changedSources) {
      const then = await input.manifestThen?.(thenByPath.get(src.path)!);
      const cur = await input.manifestNow?.(src.path);
      if (!then || !cur) {
        known = false;
        continue;
      }
      for (const [p, d] of Object.entries(cur)) if (then[p] !== d && !p.endsWith('/')) files.add(p);
      for (const p of Object.keys(then)) if (!(p in cur) && !p.endsWith('/')) files.add(p);
      // A directory whose own metadata (mode, owner) changed counts when no file inside did.
      if (files.size === 0) for (const [p, d] of Object.entries(cur)) if (then[p] !== d) files.add(p);
    }
    if (files.size) {
      const list = [...files].sort();
      const named = list.slice(0, FILES_NAMED).join(', ') + (list.length > FILES_NAMED ? `, and ${list.length - FILES_NAMED} more` : '');
      out.push(`${what}: ${list.length} file${list.length === 1 ? '' : 's'} changed: ${named}`);
    } else if (!known) {
      out.push(`${what}: source files changed`);
    }
  } else if (changedSources.length) {
    out.push(`${what}: source files changed`);
  }
  const contentsThen = JSON.stringify(before.contents);
  if (contentsThen !== JSON.stringify(now.contents)) out.push(`${what}: heredoc content changed`);
  for (const field of ['dest', 'workdir', 'chown', 'chmod', 'link', 'parents', 'checksum', 'unpack', 'keepGitDir'] as const) {
    const a = before[field];
    const b = now[field];
    if (JSON.stringify(a) !== JSON.stringify(b)) out.push(`${field} changed (${String(a ?? 'unset')} -> ${String(b ?? 'unset')})`);
  }
  if (JSON.stringify(before.exclude) !== JSON.stringify(now.exclude)) out.push('--exclude patterns changed');
  return out;
}

function toMap(env: string[]): Map<string, string> {
  const m = new Map<string, string>();
  for (const e of env) {
    const i = e.indexOf('=');
    if (i > 0) m.set(e.slice(0, i), e.slice(i + 1));
  }
  return m;
}

/** `COPY . /app` from `[build 2/4] COPY . /app`. */
export function instructionOf(vertexName: string): string {
  return vertexName.replace(/^\[[^\]]*\]\s*/, '');
}

function short(digest: string): string {
  return digest.replace(/^sha256:/, '').slice(0, 12);
}

function clip(s: string): string {
  return s.length > 60 ? `${s.slice(0, 57)}...` : s;
}
