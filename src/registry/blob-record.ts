/**
 * Which repositories kiln has seen a blob in, per registry: `<store>/registry-blobs.json`,
 *
 *   { "version": 1, "blobs": { "<digest>": { "<registry>": ["team/app", ...] } } }
 *
 * so a push can ask the registry to mount a layer from a repository that has it instead of sending
 * the bytes again (docker keeps the same kind of record). It is only a hint: a stale entry costs one
 * mount request that falls back to an upload. Saves merge with what is on disk and replace the file
 * atomically, so concurrent kiln processes lose at most each other's newest hints.
 */
import { promises as fsp } from 'node:fs';
import { join } from 'node:path';
import type { Digest } from '../oci/digest.js';
import { writeFileAtomic } from '../oci/layout/fs.js';
import { ownerTag } from '../store/owner.js';

interface RecordFile {
  version: 1;
  blobs: Record<string, Record<string, string[]>>;
}

/** Repositories remembered per blob and registry (most recent first). */
const MAX_REPOS = 8;
/** Blobs remembered in all; the oldest entries go first. */
const MAX_BLOBS = 20_000;

export class BlobRecord {
  private additions: Array<[Digest, string, string]> = [];

  private constructor(
    readonly path: string,
    private readonly tmpDir: string,
    private data: RecordFile,
  ) {}

  static async open(storeRoot: string, tmpDir = join(storeRoot, 'tmp')): Promise<BlobRecord> {
    const path = join(storeRoot, 'registry-blobs.json');
    return new BlobRecord(path, tmpDir, await readRecord(path));
  }

  /** Repositories on `registry` known to hold `digest`, most recently seen first. */
  repositories(digest: Digest, registry: string): string[] {
    return [...(this.data.blobs[digest]?.[registry] ?? [])];
  }

  add(digest: Digest, registry: string, repository: string): void {
    this.additions.push([digest, registry, repository]);
    apply(this.data, digest, registry, repository);
  }

  /** Writes the additions (merged into the file's current content). */
  async save(): Promise<void> {
    if (!this.additions.length) return;
    const current = await readRecord(this.path);
    for (const [d, r, repo] of this.additions) apply(current, d, r, repo);
    const digests = Object.keys(current.blobs);
    if (digests.length > MAX_BLOBS) {
      // Object key order is insertion order and `apply` re-inserts what it touches: the first keys are the oldest.
      for (const d of digests.slice(0, digests.length - MAX_BLOBS)) delete current.blobs[d];
    }
    await writeFileAtomic(this.path, JSON.stringify(current), { tmpDir: this.tmpDir, tempPrefix: ownerTag() });
    this.additions = [];
    this.data = current;
  }
}

function apply(rec: RecordFile, digest: Digest, registry: string, repository: string): void {
  const byRegistry = rec.blobs[digest] ?? {};
  delete rec.blobs[digest];
  const repos = (byRegistry[registry] ?? []).filter((r) => r !== repository);
  byRegistry[registry] = [repository, ...repos].slice(0, MAX_REPOS);
  rec.blobs[digest] = byRegistry;
}

async function readRecord(path: string): Promise<RecordFile> {
  try {
    const doc = JSON.parse(await fsp.readFile(path, 'utf8')) as Partial<RecordFile>;
    if (doc && doc.version === 1 && typeof doc.blobs === 'object' && doc.blobs !== null) return { version: 1, blobs: doc.blobs };
  } catch {
    // missing or damaged: it is only a hint, start afresh
  }
  return { version: 1, blobs: {} };
}
