/**
 * `--output` / `-o` in buildx's syntax (`type=oci,dest=out.tar`, a bare path meaning
 * `type=local,dest=PATH`, `-` meaning `type=tar` to standard output) and `--push`, and the
 * exporters they select.
 */
import { UsageError } from '../errors.js';

export type OutputSpec =
  | { type: 'image'; names: string[]; push: boolean }
  | { type: 'registry'; names: string[] }
  | { type: 'oci'; dest?: string; tar: boolean; names: string[] }
  | { type: 'docker'; dest?: string; names: string[] }
  | { type: 'local'; dest: string }
  | { type: 'tar'; dest: string };

/** buildx's CSV form of one `--output` value. */
function fields(value: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const part of value.split(',')) {
    const eq = part.indexOf('=');
    if (eq < 0) throw new UsageError(`invalid value "${value}" for --output: "${part}" is not KEY=VALUE`);
    out[part.slice(0, eq).trim().toLowerCase()] = part.slice(eq + 1).trim();
  }
  return out;
}

function bool(value: string | undefined, name: string, fallback: boolean): boolean {
  if (value === undefined || value === '') return fallback;
  if (value === 'true' || value === '1') return true;
  if (value === 'false' || value === '0') return false;
  throw new UsageError(`invalid value "${value}" for --output ${name}: expected true or false`);
}

export function parseOutput(value: string, tags: readonly string[]): OutputSpec {
  if (value === '-') return { type: 'tar', dest: '-' };
  if (!value.includes('=')) return { type: 'local', dest: value };
  const f = fields(value);
  const names = f.name ? f.name.split(/[ ;]/).flatMap((n) => n.split('+')).filter(Boolean) : [...tags];
  switch (f.type) {
    case 'image':
      return { type: 'image', names, push: bool(f.push, 'push', false) };
    case 'registry':
      if (names.length === 0) throw new UsageError('--output type=registry needs a name: add -t NAME or name=NAME');
      return { type: 'registry', names };
    case 'oci':
      return { type: 'oci', tar: bool(f.tar, 'tar', true), names, ...(f.dest ? { dest: f.dest } : {}) };
    case 'docker':
      return { type: 'docker', names, ...(f.dest ? { dest: f.dest } : {}) };
    case 'local':
    case 'tar':
      if (!f.dest) throw new UsageError(`--output type=${f.type} needs dest=PATH`);
      return { type: f.type, dest: f.dest };
    case undefined:
      throw new UsageError(`invalid value "${value}" for --output: type= is missing`);
    default:
      throw new UsageError(`unsupported --output type "${f.type}" (image, registry, oci, docker, local, tar)`);
  }
}

/** The outputs a build writes: `-o` values, `--push`, or by default the image into the local store. */
export function resolveOutputs(outputs: readonly string[], tags: readonly string[], push: boolean): OutputSpec[] {
  const specs = outputs.map((o) => parseOutput(o, tags));
  if (push) {
    if (tags.length === 0 && !specs.some((s) => 'names' in s && s.names.length)) {
      throw new UsageError('--push needs an image name: add -t NAME');
    }
    const image = specs.find((s): s is Extract<OutputSpec, { type: 'image' }> => s.type === 'image');
    if (image) image.push = true;
    else if (!specs.some((s) => s.type === 'registry')) specs.push({ type: 'image', names: [...tags], push: true });
  }
  if (specs.length === 0) specs.push({ type: 'image', names: [...tags], push: false });
  return specs;
}
