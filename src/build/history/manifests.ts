/**
 * Per-file digests of what a COPY read from the context, kept beside the build records so the next
 * build can name the files that changed. One file per source checksum (`manifests/<hex>.json`):
 * unchanged sources share it across builds, and a cached COPY writes nothing.
 */
import { promises as fsp } from 'node:fs';
import { join } from 'node:path';
import type { ContextManifest } from '../../context/index.js';
import { buildsDir } from './record.js';

export function manifestsDir(storeRoot: string): string {
  return join(buildsDir(storeRoot), 'manifests');
}

function manifestPath(storeRoot: string, sourceDigest: string): string {
  return join(manifestsDir(storeRoot), `${sourceDigest.replace(/^sha256:/, '')}.json`);
}

export async function readManifest(storeRoot: string, sourceDigest: string): Promise<ContextManifest | undefined> {
  try {
    return JSON.parse(await fsp.readFile(manifestPath(storeRoot, sourceDigest), 'utf8')) as ContextManifest;
  } catch {
    return undefined;
  }
}

export async function hasManifest(storeRoot: string, sourceDigest: string): Promise<boolean> {
  return fsp.access(manifestPath(storeRoot, sourceDigest)).then(
    () => true,
    () => false,
  );
}

export async function writeManifest(storeRoot: string, sourceDigest: string, manifest: ContextManifest): Promise<void> {
  const path = manifestPath(storeRoot, sourceDigest);
  await fsp.mkdir(manifestsDir(storeRoot), { recursive: true });
  const tmp = `${path}.${process.pid}.tmp`;
  await fsp.writeFile(tmp, JSON.stringify(manifest));
  await fsp.rename(tmp, path);
}
