/**
 * `RUN --mount`, `--device`, `--network` and `--security` values, following BuildKit's rules.
 *
 * A mount spec is read twice, as in BuildKit: at parse time only the CSV syntax and `from` are
 * looked at (so stage dependencies are known before any variable has a value), and at dispatch time
 * every value is expanded and the whole spec is validated. Functions here throw MountError with
 * BuildKit's wording; the converter attaches the file and line.
 */
import { goQuote, goToLower } from '../parser/gostr.js';
import { CsvError, csvFields } from './csv.js';
import { withSuggestion } from './suggest.js';

export type MountType = 'bind' | 'cache' | 'tmpfs' | 'secret' | 'ssh';
export type ShareMode = 'shared' | 'private' | 'locked';
export type NetworkMode = 'default' | 'none' | 'host';
export type SecurityMode = 'sandbox' | 'insecure';

export const MOUNT_TYPES: readonly MountType[] = ['bind', 'cache', 'tmpfs', 'secret', 'ssh'];
export const SHARE_MODES: readonly ShareMode[] = ['shared', 'private', 'locked'];
export const NETWORK_MODES: readonly NetworkMode[] = ['default', 'none', 'host'];
export const SECURITY_MODES: readonly SecurityMode[] = ['sandbox', 'insecure'];

const MOUNT_KEYS = [
  'type', 'from', 'source', 'target', 'readonly', 'id', 'sharing', 'required', 'size', 'mode', 'uid', 'gid',
  'src', 'dst', 'destination', 'ro', 'rw', 'readwrite', 'env',
];

/** A fully validated `--mount` (after variable expansion). */
export interface Mount {
  type: MountType;
  /** Stage name or image to mount from; empty for the build context (bind) or a fresh dir (cache). */
  from: string;
  /** Path inside `from`, or the secret / ssh id source. */
  source: string;
  target: string;
  readOnly: boolean;
  /** tmpfs `size` in bytes; 0 when not given. */
  sizeLimit: number;
  /** `id` (cache id, secret id, ssh id). */
  cacheId: string;
  /** Cache sharing mode, empty when not given (the builder's default is `shared`). */
  cacheSharing: ShareMode | '';
  /** secret/ssh: fail when the secret or agent is missing. */
  required: boolean;
  /** secret: expose the value in this environment variable (empty string = use the default name). */
  env?: string;
  /** File mode (octal in the spec) for secret, ssh and cache mounts. */
  mode?: number;
  uid?: number;
  gid?: number;
}

export interface Device {
  /** CDI device name, e.g. `vendor.com/class=name`. */
  name: string;
  required: boolean;
}

export class MountError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'MountError';
  }
}

/** Go strconv.ParseBool. */
export function parseGoBool(s: string): boolean | undefined {
  switch (s) {
    case '1': case 't': case 'T': case 'TRUE': case 'true': case 'True':
      return true;
    case '0': case 'f': case 'F': case 'FALSE': case 'false': case 'False':
      return false;
    default:
      return undefined;
  }
}

/** Go strconv.ParseUint(s, base, 32) for base 8 or 10 (no sign, no prefix, no underscores). */
function parseUint32(s: string, base: 8 | 10): number | undefined {
  const re = base === 8 ? /^[0-7]+$/ : /^[0-9]+$/;
  if (!re.test(s)) return undefined;
  const v = parseInt(s, base);
  return v <= 0xffffffff ? v : undefined;
}

/** Go ParseFloat for the forms a size can take (decimal or hexadecimal, optional sign and exponent). */
function parseGoFloat(s: string): number | undefined {
  if (/^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(s)) return Number(s);
  const hex = /^([+-]?)0[xX]([0-9a-fA-F]*)\.?([0-9a-fA-F]*)[pP]([+-]?\d+)$/.exec(s);
  if (hex && (hex[2] || hex[3])) {
    const mant = parseInt((hex[2] || '0') + (hex[3] ?? ''), 16) / Math.pow(16, (hex[3] ?? '').length);
    const v = mant * Math.pow(2, Number(hex[4]));
    return hex[1] === '-' ? -v : v;
  }
  return undefined;
}

/**
 * docker/go-units RAMInBytes: `64m`, `1g`, `512KiB`, `1000` (binary multiples, case-insensitive, the
 * trailing `b`/`ib` optional). Returns undefined when the size is not valid.
 */
export function ramInBytes(size: string): number | undefined {
  let sep = -1;
  for (let i = size.length - 1; i >= 0; i--) {
    if ('0123456789. '.includes(size[i]!)) {
      sep = i;
      break;
    }
  }
  if (sep === -1) return undefined;
  const num = size[sep] !== ' ' ? size.slice(0, sep + 1) : size.slice(0, sep);
  let sfx = size.slice(sep + 1);
  let value = parseGoFloat(num);
  if (value === undefined || value < 0 || Number.isNaN(value)) return undefined;
  if (sfx.length === 0) return Math.trunc(value);
  if (sfx.length > 3) return undefined;
  sfx = goToLower(sfx);
  if (sfx[0] === 'b') return sfx.length > 1 ? undefined : Math.trunc(value);
  const mul = { k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4, p: 1024 ** 5 }[sfx[0] as 'k'];
  if (mul === undefined) return undefined;
  value *= mul;
  if (sfx.length === 2 && sfx[1] !== 'b') return undefined;
  if (sfx.length === 3 && sfx.slice(1) !== 'ib') return undefined;
  return Math.trunc(value);
}

function fields(spec: string, what: 'mounts' | 'devices'): string[] {
  try {
    return csvFields(spec);
  } catch (err) {
    if (err instanceof CsvError) throw new MountError(`failed to parse csv ${what}: ${err.message}`);
    throw err;
  }
}

function cut(field: string): [string, string, boolean] {
  const i = field.indexOf('=');
  return i < 0 ? [field, '', false] : [field.slice(0, i), field.slice(i + 1), true];
}

/**
 * Parse-time reading of a mount spec: checks the CSV syntax and that `from` holds no variable (a
 * `$` anywhere but at the end), and returns the `from` value ('' when none). Other keys are only
 * read once their values can be expanded, by parseMount.
 */
export function mountSourceAtParse(spec: string): string {
  let from = '';
  for (const field of fields(spec, 'mounts')) {
    const [rawKey, value, ok] = cut(field);
    if (!ok || goToLower(rawKey) !== 'from') continue;
    const idx = value.indexOf('$');
    if (idx !== -1 && idx !== value.length - 1) {
      throw new MountError("'from' doesn't support variable expansion, define alias stage instead");
    }
    from = value;
  }
  return from;
}

/**
 * Reads and validates a mount spec, passing every `key=value` value through `expand` first (give
 * the identity function to read a spec without variables). Throws MountError.
 */
export function parseMount(spec: string, expand: (word: string) => string): Mount {
  const m: Mount = {
    type: 'bind', from: '', source: '', target: '', readOnly: false, sizeLimit: 0,
    cacheId: '', cacheSharing: '', required: false,
  };
  let roAuto = true;
  const badValue = (key: string, value: string) => new MountError(`invalid value for ${key}: ${value}`);
  const unexpected = (key: string) => new MountError(`unexpected key '${key}' for mount type '${m.type}'`);

  for (const field of fields(spec, 'mounts')) {
    const [rawKey, rawValue, ok] = cut(field);
    const key = goToLower(rawKey);
    if (!ok) {
      switch (key) {
        case 'readonly': case 'ro':
          m.readOnly = true;
          roAuto = false;
          continue;
        case 'readwrite': case 'rw':
          m.readOnly = false;
          roAuto = false;
          continue;
        case 'required':
          if (m.type === 'secret' || m.type === 'ssh') {
            m.required = true;
            continue;
          }
          throw unexpected(key);
        default:
          throw new MountError(`invalid field '${field}' must be a key=value pair`);
      }
    }
    const value = expand(rawValue);
    switch (key) {
      case 'type': {
        const t = goToLower(value) as MountType;
        if (!MOUNT_TYPES.includes(t)) {
          throw new MountError(withSuggestion(`unsupported mount type ${goQuote(value)}`, value, MOUNT_TYPES, true));
        }
        m.type = t;
        break;
      }
      case 'from':
        m.from = value;
        break;
      case 'source': case 'src':
        m.source = value;
        break;
      case 'target': case 'dst': case 'destination':
        m.target = value;
        break;
      case 'readonly': case 'ro': {
        const b = parseGoBool(value);
        if (b === undefined) throw badValue(key, value);
        m.readOnly = b;
        roAuto = false;
        break;
      }
      case 'readwrite': case 'rw': {
        const b = parseGoBool(value);
        if (b === undefined) throw badValue(key, value);
        m.readOnly = !b;
        roAuto = false;
        break;
      }
      case 'required': {
        if (m.type !== 'secret' && m.type !== 'ssh') throw unexpected(key);
        const b = parseGoBool(value);
        if (b === undefined) throw badValue(key, value);
        m.required = b;
        break;
      }
      case 'size': {
        if (m.type !== 'tmpfs') throw unexpected(key);
        const n = ramInBytes(value);
        if (n === undefined) throw badValue(key, value);
        m.sizeLimit = n;
        break;
      }
      case 'id':
        m.cacheId = value;
        break;
      case 'sharing': {
        const s = goToLower(value) as ShareMode;
        if (!SHARE_MODES.includes(s)) {
          throw new MountError(withSuggestion(`unsupported sharing value ${goQuote(value)}`, value, SHARE_MODES, true));
        }
        m.cacheSharing = s;
        break;
      }
      case 'mode': {
        const n = parseUint32(value, 8);
        if (n === undefined) throw new MountError(`invalid value ${value} for mode`);
        m.mode = n;
        break;
      }
      case 'uid': {
        const n = parseUint32(value, 10);
        if (n === undefined) throw new MountError(`invalid value ${value} for uid`);
        m.uid = n;
        break;
      }
      case 'gid': {
        const n = parseUint32(value, 10);
        if (n === undefined) throw new MountError(`invalid value ${value} for gid`);
        m.gid = n;
        break;
      }
      case 'env':
        m.env = value;
        break;
      default:
        throw new MountError(withSuggestion(`unexpected key '${key}' in '${field}'`, key, MOUNT_KEYS, true));
    }
  }

  const fileInfoAllowed = m.type === 'secret' || m.type === 'ssh' || m.type === 'cache';
  if (!fileInfoAllowed) {
    if (m.mode !== undefined) throw new MountError(`mode not allowed for ${goQuote(m.type)} type mounts`);
    if (m.uid !== undefined) throw new MountError(`uid not allowed for ${goQuote(m.type)} type mounts`);
    if (m.gid !== undefined) throw new MountError(`gid not allowed for ${goQuote(m.type)} type mounts`);
  }
  // Writable by default only where writes are the point (cache, tmpfs).
  if (roAuto) m.readOnly = !(m.type === 'cache' || m.type === 'tmpfs');
  if (m.type === 'secret') {
    if (m.from !== '') throw new MountError('secret mount should not have a from');
    if (m.cacheSharing !== '') throw new MountError('secret mount should not define sharing');
    if (m.source === '' && m.target === '' && m.cacheId === '') {
      throw new MountError('invalid secret mount. one of source, target required');
    }
    if (m.source !== '' && m.cacheId !== '') throw new MountError("both source and id can't be set");
  }
  if (m.cacheSharing !== '' && m.type !== 'cache') {
    throw new MountError(`invalid cache sharing set for ${m.type} mount`);
  }
  return m;
}

/** `RUN --device` value: `name[,required[=bool]]` or `name=NAME[,...]`. */
export function parseDevice(spec: string): Device {
  const d: Device = { name: '', required: false };
  for (const field of fields(spec, 'devices')) {
    const [rawKey, value, ok] = cut(field);
    const key = goToLower(rawKey);
    if (!ok) {
      if (key === 'required') {
        d.required = true;
        continue;
      }
      if (d.name === '') {
        d.name = field;
        continue;
      }
      throw new MountError(`invalid field '${field}' must be a key=value pair`);
    }
    switch (key) {
      case 'name':
        if (d.name !== '') throw new MountError(`device name already set to ${d.name}`);
        d.name = value;
        break;
      case 'required': {
        const b = parseGoBool(value);
        if (b === undefined) throw new MountError(`invalid value for ${key}: ${value}`);
        d.required = b;
        break;
      }
      default:
        // A CDI name itself contains `=` (`vendor.com/class=name`).
        if (d.name === '') {
          d.name = field;
          break;
        }
        throw new MountError(withSuggestion(`unexpected key '${key}' in '${field}'`, key, ['name', 'required'], true));
    }
  }
  return d;
}

