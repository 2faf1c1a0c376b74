/**
 * Structured cache keys. A step's key is a record of everything its result depends on — the parent
 * filesystem's key, the instruction after expansion, the environment and build args it sees, the
 * content digests of the files it reads, its mounts (never a secret's value), the platform — and
 * the key digest is the sha256 of that record in canonical JSON. Keeping the record (not just the
 * digest) lets a miss be explained in words by comparing it with the previous build's record.
 */
import { sha256, type Digest } from '../oci/digest.js';

/** Where a stage's filesystem starts. */
export type BaseKey =
  | { kind: 'scratch'; platform: string }
  | { kind: 'image'; ref: string; manifest: Digest; platform: string };

export interface RunKey {
  kind: 'run';
  parent: Digest;
  platform: string;
  args: string[];
  env: string[];
  user: string;
  workdir: string;
  network: string;
  security: string;
  /** Mount specs with sources resolved to content keys; secrets by id only. */
  mounts: Array<Record<string, string | number | boolean>>;
  /** A heredoc script run from /dev/pipes: its name and content digest. */
  script?: { name: string; digest: Digest };
  /** SOURCE_DATE_EPOCH: it sets the times in the layer, so a layer made without it is not the same. */
  epoch?: number;
}

export interface CopyKey {
  kind: 'copy' | 'add';
  parent: Digest;
  platform: string;
  /** `context`, or the key of the stage / image the files come from. */
  from: string;
  /** Source patterns as expanded, with the content digest of what each matched. */
  sources: Array<{ path: string; digest: string }>;
  /** Heredoc sources: name and content digest. */
  contents: Array<{ path: string; digest: Digest }>;
  dest: string;
  workdir: string;
  chown: string;
  chmod: string;
  link: boolean;
  parents: boolean;
  exclude: string[];
  /** ADD options. */
  checksum?: string;
  unpack?: boolean;
  keepGitDir?: boolean;
  /** SOURCE_DATE_EPOCH (file times in the layer are clamped to it). */
  epoch?: number;
}

/**
 * A COPY --from=STAGE by what it copied. The step is first looked up by its CopyKey, which names the
 * source stage by its key; when that misses (the stage was rebuilt), the copy runs and this key, made
 * from the copied files without their times, finds an earlier copy of the same files. It is the key
 * the steps after the copy build on, so they stay cached when a rebuilt stage gave the same files,
 * as BuildKit's content-based cache keys make them.
 */
export interface CopyContentKey {
  kind: 'copy-content';
  parent: Digest;
  platform: string;
  /** The digest of the copied entries without times (see copyLayerTar's onContentDigest). */
  content: string;
  /** SOURCE_DATE_EPOCH (the times in the layer). */
  epoch?: number;
}

export interface MkdirKey {
  kind: 'mkdir';
  parent: Digest;
  platform: string;
  path: string;
  user: string;
  /** SOURCE_DATE_EPOCH (the directories' times). */
  epoch?: number;
}

export type StepKey = RunKey | CopyKey | CopyContentKey | MkdirKey;
export type KeyRecord = BaseKey | StepKey;

/** JSON with object keys sorted, so equal records always give equal digests. */
export function canonicalJSON(value: unknown): string {
  if (value === null || typeof value !== 'object') return JSON.stringify(value) ?? 'null';
  if (Array.isArray(value)) return `[${value.map(canonicalJSON).join(',')}]`;
  const entries = Object.entries(value as Record<string, unknown>)
    .filter(([, v]) => v !== undefined)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJSON(v)}`).join(',')}}`;
}

export function keyDigest(record: KeyRecord): Digest {
  return sha256(canonicalJSON({ v: 1, ...record }));
}
