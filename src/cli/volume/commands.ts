/** The `kiln volume` commands, worded and formatted as docker's. */
import { KilnError, UsageError } from '../../errors.js';
import { VolumeStore, validateVolumeName, type VolumeInfo } from '../../run/volumes.js';
import { throwCollected } from '../collected-errors.js';
import { confirm, PruneCancelledError } from '../confirm.js';
import { renderList } from '../image/template.js';
import { writeInspectDocuments } from '../inspect-output.js';
import { humanSize } from '../image/units.js';

export interface VolumeCreateOptions {
  name?: string;
  driver?: string;
  label?: Record<string, string>;
  opt?: string[];
}

export async function runVolumeCreate(root: string, argName: string | undefined, options: VolumeCreateOptions): Promise<void> {
  if (argName !== undefined && options.name !== undefined && argName !== options.name) {
    throw new UsageError(`conflicting options: either specify --name or provide positional arg, not both`);
  }
  const name = argName ?? options.name;
  if (options.driver && options.driver !== 'local') throw new UsageError(`volume driver "${options.driver}" is not supported: kiln has only the "local" driver`);
  if (options.opt?.length) throw new UsageError(`create: driver options (-o ${options.opt[0]}) are not supported by kiln's local driver`, { hint: 'mount a host directory with -v /host/path:/path instead' });
  if (name !== undefined) validateVolumeName(name);
  const volume = await VolumeStore.open(root).create(name, { labels: options.label ?? {} });
  process.stdout.write(`${volume.name}\n`);
}

export interface VolumeListOptions {
  filter?: string[];
  format?: string;
  quiet?: boolean;
}

/** A row of `volume ls` as docker's formatter exposes it to templates. */
function listRow(v: VolumeInfo): Record<string, unknown> {
  return {
    Availability: 'N/A',
    Driver: 'local',
    Group: 'N/A',
    Labels: Object.entries(v.labels)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([k, val]) => `${k}=${val}`)
      .join(','),
    Links: 'N/A',
    Mountpoint: v.mountpoint,
    Name: v.name,
    Scope: 'local',
    Size: 'N/A',
    Status: 'N/A',
  };
}

export async function runVolumeList(root: string, options: VolumeListOptions): Promise<void> {
  const store = VolumeStore.open(root);
  const filter = parseFilters(options.filter ?? [], ['dangling', 'name', 'label', 'driver']);
  const usage = filter.dangling ? await store.usage() : undefined;
  const volumes = (await store.list()).filter((v) => matches(v, filter, usage));
  if (options.quiet) {
    process.stdout.write(volumes.map((v) => `${v.name}\n`).join(''));
    return;
  }
  process.stdout.write(
    renderList(options.format, volumes.map(listRow), {
      table: 'table {{.Driver}}\t{{.Name}}',
      headers: { Driver: 'DRIVER', Name: 'VOLUME NAME', Mountpoint: 'MOUNTPOINT', Labels: 'LABELS', Scope: 'SCOPE', Links: 'LINKS', Size: 'SIZE', Availability: 'AVAILABILITY', Group: 'GROUP', Status: 'STATUS' },
    }),
  );
}

type Filters = Record<string, string[]>;

function parseFilters(specs: string[], allowed: string[]): Filters {
  const out: Filters = {};
  for (const spec of specs) {
    const m = /^([^=!]+)(!?=)(.*)$/.exec(spec);
    if (!m) throw new UsageError(`bad format of filter (expected name=value)`);
    const key = m[2] === '!=' ? `${m[1]}!` : m[1]!;
    if (!allowed.includes(key)) throw new UsageError(`invalid filter '${m[1]}'`);
    (out[key] ??= []).push(m[3]!);
  }
  return out;
}

function labelMatches(v: VolumeInfo, spec: string): boolean {
  const eq = spec.indexOf('=');
  if (eq < 0) return spec in v.labels;
  return v.labels[spec.slice(0, eq)] === spec.slice(eq + 1);
}

function matches(v: VolumeInfo, f: Filters, usage: Map<string, string[]> | undefined): boolean {
  if (f.dangling) {
    const wanted = f.dangling.map((d) => {
      if (!['true', 'false', '1', '0'].includes(d)) throw new UsageError(`invalid filter 'dangling=${d}'`);
      return d === 'true' || d === '1';
    });
    const dangling = !usage?.get(v.name)?.length;
    if (!wanted.includes(dangling)) return false;
  }
  if (f.name && !f.name.some((n) => v.name.includes(n))) return false;
  if (f.driver && !f.driver.includes('local')) return false;
  if (f.label && !f.label.every((l) => labelMatches(v, l))) return false;
  if (f['label!'] && f['label!'].some((l) => labelMatches(v, l))) return false;
  return true;
}

/** docker's `volume inspect` document. */
function inspectDocument(v: VolumeInfo): Record<string, unknown> {
  return {
    CreatedAt: v.createdAt,
    Driver: 'local',
    Labels: Object.keys(v.labels).length ? v.labels : null,
    Mountpoint: v.mountpoint,
    Name: v.name,
    Options: null,
    Scope: 'local',
  };
}

export async function runVolumeInspect(root: string, names: string[], options: { format?: string }): Promise<void> {
  const store = VolumeStore.open(root);
  const docs: Array<Record<string, unknown>> = [];
  const errors: KilnError[] = [];
  for (const name of names) {
    const v = await store.get(name);
    if (v) docs.push(inspectDocument(v));
    else errors.push(new KilnError('VOLUME_NOT_FOUND', `No such volume: ${name}`));
  }
  writeInspectDocuments(docs, options.format);
  throwCollected(errors);
}

/** Runs the rest of the command inside kiln's user namespace when rootless: volume data may belong to subordinate ids. */
async function enterNamespace(): Promise<void> {
  const { ensureNamespace } = await import('../../sandbox/userns.js');
  await ensureNamespace();
}

export async function runVolumeRemove(root: string, names: string[], options: { force?: boolean }): Promise<void> {
  await enterNamespace();
  const store = VolumeStore.open(root);
  const errors: KilnError[] = [];
  for (const name of names) {
    try {
      const existed = (await store.get(name)) !== undefined;
      await store.remove(name, { force: options.force });
      if (existed || options.force) process.stdout.write(`${name}\n`);
    } catch (err) {
      if (!(err instanceof KilnError)) throw err;
      errors.push(err);
    }
  }
  throwCollected(errors);
}

export interface VolumePruneOptions {
  all?: boolean;
  force?: boolean;
  filter?: string[];
}

export async function runVolumePrune(root: string, options: VolumePruneOptions): Promise<void> {
  const filter = parseFilters(options.filter ?? [], ['label', 'label!', 'all']);
  const all = options.all || (filter.all ?? []).some((v) => v === 'true' || v === '1');
  await enterNamespace();
  if (!options.force) {
    const warning = all
      ? 'WARNING! This will remove all local volumes not used by at least one container.'
      : 'WARNING! This will remove anonymous local volumes not used by at least one container.';
    if (!(await confirm(`${warning}\nAre you sure you want to continue?`))) throw new PruneCancelledError('volume');
  }
  const result = await VolumeStore.open(root).prune({ all, only: (v) => matches(v, filter, undefined) });
  let out = '';
  if (result.removed.length) out += `Deleted Volumes:\n${result.removed.map((n) => `${n}\n`).join('')}\n`;
  out += `Total reclaimed space: ${humanSize(result.reclaimedBytes, 4)}\n`;
  process.stdout.write(out);
}
