/**
 * From `kiln run`/`kiln create` flags and the image's config to a container's configuration, with
 * docker's rules:
 *
 * - argv: `--entrypoint` replaces the image's Entrypoint and drops its Cmd; a command given after
 *   the image replaces Cmd; argv = Entrypoint + Cmd, and an empty one is an error.
 * - env: the image's Env, then `--env-file` lines, then `-e` (later wins; `-e NAME` copies NAME
 *   from kiln's environment when set there).
 * - user, working directory, stop signal: the flag, else the image's.
 * - mounts: `-v HOST:CTR[:ro]` (a path: bind, the host directory made when missing), `-v NAME:CTR`
 *   (named volume, made when missing), `-v CTR` (anonymous volume), `--mount`, `--tmpfs`; every
 *   image VOLUME not covered gets an anonymous volume.
 */
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { isAbsolute, posix, resolve } from 'node:path';
import { UsageError } from '../errors.js';
import type { ImageConfig } from '../oci/types.js';
import type { ContainerConfig, ContainerMount } from './containers.js';

export interface ContainerFlags {
  name?: string;
  rm?: boolean;
  detach?: boolean;
  env: string[];
  envFile: string[];
  workdir?: string;
  user?: string;
  entrypoint?: string;
  volume: string[];
  mount: string[];
  tmpfs: string[];
  readOnly?: boolean;
  network?: string;
  publish: string[];
  hostname?: string;
  interactive?: boolean;
  tty?: boolean;
  init?: boolean;
  stopSignal?: string;
  stopTimeout?: string;
  label: Record<string, string>;
}

/** The process part of the config (argv, env, user, workdir, stop signal). */
export function processConfig(flags: ContainerFlags, image: ImageConfig, command: string[], hostname: string): ContainerConfig {
  const ic = image.config ?? {};
  let entrypoint: string[];
  let cmd: string[];
  if (flags.entrypoint !== undefined) {
    entrypoint = flags.entrypoint === '' ? [] : [flags.entrypoint];
    cmd = command;
  } else {
    entrypoint = ic.Entrypoint ?? [];
    cmd = command.length ? command : (ic.Cmd ?? []);
  }
  const argv = [...entrypoint, ...cmd];
  if (argv.length === 0) throw new UsageError('no command specified', { exitCode: 125, hint: 'give a command after the image name, or use an image with a CMD or ENTRYPOINT' });
  const env = [...(ic.Env ?? [])];
  for (const file of flags.envFile) env.push(...readEnvFile(file));
  for (const e of flags.env) {
    const item = envItem(e);
    if (item !== undefined) env.push(item);
  }
  let stopTimeout: number | undefined;
  if (flags.stopTimeout !== undefined) {
    stopTimeout = Number(flags.stopTimeout);
    if (!Number.isInteger(stopTimeout)) throw new UsageError(`invalid argument "${flags.stopTimeout}" for "--stop-timeout" flag: not an integer`);
  }
  return {
    path: argv[0]!,
    args: argv.slice(1),
    entrypoint,
    cmd,
    env,
    user: flags.user ?? ic.User ?? '',
    workingDir: flags.workdir ?? ic.WorkingDir ?? '',
    hostname,
    tty: Boolean(flags.tty),
    openStdin: Boolean(flags.interactive),
    stopSignal: flags.stopSignal ?? ic.StopSignal ?? 'SIGTERM',
    ...(stopTimeout !== undefined ? { stopTimeout } : {}),
    ...(Object.keys(flags.label).length ? { labels: flags.label } : {}),
  };
}

/** `-e NAME=value`, or `-e NAME` taking kiln's own value (dropped when unset, as docker does). */
function envItem(e: string): string | undefined {
  const eq = e.indexOf('=');
  if (eq === 0) throw new UsageError(`invalid argument "${e}" for "-e, --env" flag: invalid environment variable: ${e}`);
  if (eq > 0) return e;
  const value = process.env[e];
  return value === undefined ? undefined : `${e}=${value}`;
}

/** docker's env-file: `NAME=value` or `NAME` lines; `#` comments and blank lines skipped; no quoting. */
export function readEnvFile(path: string): string[] {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new UsageError(`open ${path}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file or directory' : (err as Error).message}`);
  }
  const out: string[] = [];
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.replace(/^\s+/, '');
    if (line === '' || line.startsWith('#')) continue;
    const item = envItem(line);
    if (item !== undefined) out.push(item);
  }
  return out;
}

/** A mount the user asked for, before volumes exist: volume sources are names ('' for a new anonymous one). */
export function parseMounts(flags: Pick<ContainerFlags, 'volume' | 'mount' | 'tmpfs'>, cwd = process.cwd()): ContainerMount[] {
  const out: ContainerMount[] = [];
  for (const v of flags.volume) out.push(parseVolumeFlag(v, cwd));
  for (const m of flags.mount) out.push(parseMountFlag(m, cwd));
  for (const t of flags.tmpfs) {
    const colon = t.indexOf(':');
    const destination = colon < 0 ? t : t.slice(0, colon);
    checkDestination(destination, `--tmpfs ${t}`);
    out.push({ type: 'tmpfs', destination: posix.normalize(destination), readOnly: false, options: colon < 0 ? [] : t.slice(colon + 1).split(',').filter(Boolean) });
  }
  const seen = new Set<string>();
  for (const m of out) {
    if (seen.has(m.destination)) throw new UsageError(`Duplicate mount point: ${m.destination}`, { exitCode: 125 });
    seen.add(m.destination);
  }
  return out;
}

function checkDestination(dest: string, spec: string): void {
  if (!dest.startsWith('/')) throw new UsageError(`invalid mount config: the destination of ${spec} must be an absolute path`, { exitCode: 125 });
  if (posix.normalize(dest) === '/') throw new UsageError(`invalid mount config: ${spec}: the destination cannot be /`, { exitCode: 125 });
}

function isHostPath(source: string): boolean {
  return source.startsWith('/') || source.startsWith('./') || source.startsWith('../') || source === '.' || source === '..' || source.startsWith('~');
}

/** `-v [SOURCE:]DEST[:OPTIONS]`. */
export function parseVolumeFlag(spec: string, cwd: string): ContainerMount {
  const parts = spec.split(':');
  let source: string | undefined;
  let dest: string;
  let opts = '';
  if (parts.length === 1) dest = parts[0]!;
  else if (parts.length === 2) {
    // `/ctr:ro` is not a thing: two parts are SOURCE:DEST.
    [source, dest] = parts as [string, string];
  } else if (parts.length === 3) [source, dest, opts] = parts as [string, string, string];
  else throw new UsageError(`invalid spec: ${spec}: too many colons`, { exitCode: 125 });
  checkDestination(dest, `-v ${spec}`);
  const options = opts.split(',').filter(Boolean);
  for (const o of options) {
    if (!['ro', 'rw', 'z', 'Z', 'nocopy', 'rbind', 'bind', 'private', 'rprivate'].includes(o)) throw new UsageError(`invalid mode: ${o}`, { exitCode: 125 });
  }
  const readOnly = options.includes('ro');
  const destination = posix.normalize(dest);
  if (source === undefined || source === '') return { type: 'volume', source: '', destination, readOnly, anonymous: true };
  if (isHostPath(source)) {
    const host = source.startsWith('~') ? resolve(process.env.HOME ?? '/', `.${source.slice(1)}`) : resolve(cwd, source);
    // docker -v makes a missing host directory (--mount does not).
    if (!existsSync(host)) mkdirSync(host, { recursive: true });
    return { type: 'bind', source: host, destination, readOnly };
  }
  if (!/^[a-zA-Z0-9][a-zA-Z0-9_.-]+$/.test(source)) {
    throw new UsageError(`create ${source}: "${source}" includes invalid characters for a local volume name, only "[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed. If you intended to pass a host directory, use absolute path`, { exitCode: 125 });
  }
  return { type: 'volume', source, destination, readOnly };
}

/** `--mount type=bind|volume|tmpfs,source=…,target=…[,readonly]`. */
export function parseMountFlag(spec: string, cwd: string): ContainerMount {
  let type = 'volume';
  let source: string | undefined;
  let target: string | undefined;
  let readOnly = false;
  const options: string[] = [];
  for (const field of spec.split(',')) {
    const eq = field.indexOf('=');
    const key = (eq < 0 ? field : field.slice(0, eq)).trim().toLowerCase();
    const value = eq < 0 ? undefined : field.slice(eq + 1);
    switch (key) {
      case 'type':
        type = value ?? '';
        break;
      case 'source':
      case 'src':
        source = value;
        break;
      case 'target':
      case 'dst':
      case 'destination':
        target = value;
        break;
      case 'readonly':
      case 'ro':
        if (value === undefined || ['1', 'true'].includes(value.toLowerCase())) readOnly = true;
        else if (['0', 'false'].includes(value.toLowerCase())) readOnly = false;
        else throw new UsageError(`invalid value for ${key}: ${value}`, { exitCode: 125 });
        break;
      case 'tmpfs-size':
        options.push(`size=${value}`);
        break;
      case 'tmpfs-mode':
        options.push(`mode=${value}`);
        break;
      case 'bind-propagation':
      case 'consistency':
      case 'volume-nocopy':
        break;
      default:
        throw new UsageError(`unexpected key '${key}' in '${field}'`, { exitCode: 125 });
    }
  }
  if (!target) throw new UsageError(`invalid argument "${spec}" for "--mount" flag: target is required`, { exitCode: 125 });
  checkDestination(target, `--mount ${spec}`);
  const destination = posix.normalize(target);
  switch (type) {
    case 'bind': {
      if (!source) throw new UsageError(`invalid mount config for type "bind": field Source must not be empty`, { exitCode: 125 });
      const host = isAbsolute(source) ? source : resolve(cwd, source);
      if (!existsSync(host)) throw new UsageError(`invalid mount config for type "bind": bind source path does not exist: ${host}`, { exitCode: 125 });
      return { type: 'bind', source: host, destination, readOnly };
    }
    case 'volume':
      return source ? { type: 'volume', source, destination, readOnly } : { type: 'volume', source: '', destination, readOnly, anonymous: true };
    case 'tmpfs':
      if (source) throw new UsageError(`invalid mount config for type "tmpfs": field Source must be empty`, { exitCode: 125 });
      return { type: 'tmpfs', destination, readOnly, options };
    default:
      throw new UsageError(`invalid mount type "${type}": use bind, volume or tmpfs`, { exitCode: 125 });
  }
}

/** Anonymous volumes for the image's VOLUMEs that no mount covers. */
export function imageVolumes(image: ImageConfig, mounts: ContainerMount[]): ContainerMount[] {
  const covered = new Set(mounts.map((m) => m.destination));
  const out: ContainerMount[] = [];
  for (const path of Object.keys(image.config?.Volumes ?? {}).sort()) {
    const destination = posix.normalize(path.startsWith('/') ? path : `/${path}`);
    if (covered.has(destination) || destination === '/') continue;
    covered.add(destination);
    out.push({ type: 'volume', source: '', destination, readOnly: false, anonymous: true });
  }
  return out;
}
