/**
 * `--cache-to` / `--cache-from` values in buildx's CSV syntax:
 *
 *   --cache-to   type=registry,ref=REF[,mode=min|max][,mounts=true][,mounts-max-size=512m]
 *   --cache-to   type=local,dest=DIR[,mode=min|max][,mounts=true]
 *   --cache-to   type=inline
 *   --cache-from type=registry,ref=REF      (a cache manifest, or an image with inline cache)
 *   --cache-from type=local,src=DIR
 *   --cache-from REF                        (shorthand for type=registry,ref=REF)
 *
 * A value that cannot be used is a one-line UsageError naming the flag and the part at fault.
 */
import { UsageError } from '../errors.js';
import { normalizeReference, formatReference } from '../oci/reference.js';

export type CacheMode = 'min' | 'max';

export type CacheToSpec =
  | { type: 'registry'; ref: string; mode: CacheMode; mounts: boolean; mountsMaxSize: number; ignoreError: boolean }
  | { type: 'local'; dest: string; mode: CacheMode; mounts: boolean; mountsMaxSize: number; ignoreError: boolean }
  | { type: 'inline' };

export type CacheFromSpec = { type: 'registry'; ref: string } | { type: 'local'; src: string };

/** Cache mounts larger than this are not exported (a warning says so). */
export const DEFAULT_MOUNTS_MAX_SIZE = 512 * 1024 * 1024;

function fields(flag: string, value: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const part of value.split(',')) {
    if (part.trim() === '') continue;
    const eq = part.indexOf('=');
    if (eq < 0) throw new UsageError(`invalid value "${value}" for ${flag}: "${part}" is not KEY=VALUE`);
    out[part.slice(0, eq).trim().toLowerCase()] = part.slice(eq + 1).trim();
  }
  return out;
}

function reference(flag: string, ref: string | undefined, type: string): string {
  if (!ref) throw new UsageError(`${flag} type=${type} needs ref=REFERENCE`);
  try {
    return formatReference(normalizeReference(ref));
  } catch (err) {
    throw new UsageError(`invalid ref "${ref}" for ${flag}: ${err instanceof Error ? err.message : String(err)}`);
  }
}

function mode(flag: string, value: string | undefined): CacheMode {
  if (value === undefined || value === '' || value === 'min') return 'min';
  if (value === 'max') return 'max';
  throw new UsageError(`invalid mode "${value}" for ${flag}: expected min or max`);
}

function bool(flag: string, key: string, value: string | undefined): boolean {
  if (value === undefined || value === '' || value === 'false' || value === '0') return false;
  if (value === 'true' || value === '1') return true;
  throw new UsageError(`invalid ${key} "${value}" for ${flag}: expected true or false`);
}

function size(flag: string, value: string | undefined): number {
  if (value === undefined || value === '') return DEFAULT_MOUNTS_MAX_SIZE;
  const m = /^(\d+)([bkmg])?i?b?$/i.exec(value.trim());
  if (!m) throw new UsageError(`invalid mounts-max-size "${value}" for ${flag}: expected a size like 512m`);
  return Number(m[1]) * { b: 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 }[(m[2] ?? 'b').toLowerCase() as 'b' | 'k' | 'm' | 'g'];
}

function known(flag: string, f: Record<string, string>, allowed: string[]): void {
  for (const k of Object.keys(f)) {
    if (!allowed.includes(k)) throw new UsageError(`unknown option "${k}" for ${flag} type=${f.type} (${allowed.filter((a) => a !== 'type').join(', ')})`);
  }
}

/**
 * buildx options kiln's format always satisfies (an OCI image manifest, OCI media types, gzip
 * layers): accepted so existing CI lines work, refused when they ask for something else.
 */
function compatible(flag: string, f: Record<string, string>): void {
  if (f.compression !== undefined && f.compression !== 'gzip') throw new UsageError(`unsupported compression "${f.compression}" for ${flag}: cache layers are gzip`);
  for (const k of ['oci-mediatypes', 'image-manifest'] as const) {
    if (f[k] !== undefined && !bool(flag, k, f[k])) throw new UsageError(`${flag} ${k}=false is not supported: kiln's cache is an OCI image manifest`);
  }
}

export function parseCacheTo(value: string): CacheToSpec {
  const flag = '--cache-to';
  const f = fields(flag, value);
  if (f.type === 'registry' || f.type === 'local') compatible(flag, f);
  const common = () => ({ mode: mode(flag, f.mode), mounts: bool(flag, 'mounts', f.mounts), mountsMaxSize: size(flag, f['mounts-max-size']), ignoreError: bool(flag, 'ignore-error', f['ignore-error']) });
  switch (f.type) {
    case 'registry':
      known(flag, f, ['type', 'ref', 'mode', 'mounts', 'mounts-max-size', 'compression', 'oci-mediatypes', 'image-manifest', 'ignore-error']);
      return { type: 'registry', ref: reference(flag, f.ref, 'registry'), ...common() };
    case 'local':
      known(flag, f, ['type', 'dest', 'mode', 'mounts', 'mounts-max-size', 'compression', 'oci-mediatypes', 'image-manifest', 'ignore-error']);
      if (!f.dest) throw new UsageError(`${flag} type=local needs dest=DIR`);
      return { type: 'local', dest: f.dest, ...common() };
    case 'inline':
      known(flag, f, ['type', 'mode']);
      if (f.mode === 'max') throw new UsageError(`${flag} type=inline supports only mode=min: the image holds only the final stage's layers`);
      return { type: 'inline' };
    case undefined:
      throw new UsageError(`invalid value "${value}" for ${flag}: type= is missing (registry, local or inline)`);
    default:
      throw new UsageError(`unsupported ${flag} type "${f.type}" (registry, local or inline)`);
  }
}

export function parseCacheFrom(value: string): CacheFromSpec {
  const flag = '--cache-from';
  // buildx: a value without `=` is a registry reference.
  if (!value.includes('=')) return { type: 'registry', ref: reference(flag, value.trim(), 'registry') };
  const f = fields(flag, value);
  switch (f.type) {
    case 'registry':
      known(flag, f, ['type', 'ref']);
      return { type: 'registry', ref: reference(flag, f.ref, 'registry') };
    case 'local':
      known(flag, f, ['type', 'src', 'digest', 'tag']);
      if (!f.src) throw new UsageError(`${flag} type=local needs src=DIR`);
      return { type: 'local', src: f.src };
    case undefined:
      throw new UsageError(`invalid value "${value}" for ${flag}: type= is missing (registry or local)`);
    default:
      throw new UsageError(`unsupported ${flag} type "${f.type}" (registry or local)`);
  }
}
