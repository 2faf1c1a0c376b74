/**
 * The `# check=` directive: `skip=Rule1,Rule2` or `skip=all`, `error=true`, `experimental=Rule|all`,
 * separated by `;`, as BuildKit reads it. The same syntax in a comment directly above an instruction
 * applies to that instruction only.
 */
import { DockerfileError, type SourceLocation } from '../../errors.js';
import { matchDirectiveLine } from '../parser/directives.js';
import type { Rule } from './rules.js';

export interface CheckConfig {
  skipAll: boolean;
  skip: ReadonlySet<string>;
  /** Any warning makes the check fail (exit status 1). */
  error: boolean;
  experimentalAll: boolean;
  experimental: ReadonlySet<string>;
}

export const DEFAULT_CHECK_CONFIG: CheckConfig = {
  skipAll: false,
  skip: new Set(),
  error: false,
  experimentalAll: false,
  experimental: new Set(),
};

/** Go strconv.ParseBool. */
function parseBool(v: string): boolean | undefined {
  if (['1', 't', 'T', 'TRUE', 'true', 'True'].includes(v)) return true;
  if (['0', 'f', 'F', 'FALSE', 'false', 'False'].includes(v)) return false;
  return undefined;
}

function list(v: string): string[] {
  return v.split(',').map((s) => s.trim());
}

/** Parses a `check` directive value; throws DockerfileError (at `location`) for an invalid option. */
export function parseCheckConfig(value: string, location?: SourceLocation): CheckConfig {
  const text = value.trim();
  if (text === '') return DEFAULT_CHECK_CONFIG;
  const cfg = { ...DEFAULT_CHECK_CONFIG, skip: new Set<string>(), experimental: new Set<string>() };
  for (const part of text.split(';')) {
    const eq = part.indexOf('=');
    if (eq < 0) throw new DockerfileError(`failed to parse check options: invalid check option "${part}"`, location);
    const key = part.slice(0, eq).trim();
    const v = part.slice(eq + 1).trim();
    switch (key) {
      case 'skip':
        if (v === 'all') cfg.skipAll = true;
        else for (const r of list(v)) cfg.skip.add(r);
        break;
      case 'error': {
        const b = parseBool(v);
        if (b === undefined) {
          throw new DockerfileError(`failed to parse check options: failed to parse check option "${part}"`, location);
        }
        cfg.error = b;
        break;
      }
      case 'experimental':
        if (v === 'all') cfg.experimentalAll = true;
        else for (const r of list(v)) cfg.experimental.add(r);
        break;
      default:
        throw new DockerfileError(`failed to parse check options: invalid check option "${key}"`, location);
    }
  }
  return cfg;
}

/** The config an instruction runs under: the file's, merged with a `# check=` comment above it. */
export function configForComments(base: CheckConfig, comments: readonly string[]): CheckConfig {
  for (const comment of comments) {
    const d = matchDirectiveLine(comment.trim());
    if (!d || d.name !== 'check') continue;
    let extra: CheckConfig;
    try {
      extra = parseCheckConfig(d.value.split(' ')[0] ?? '');
    } catch {
      // BuildKit ignores a malformed per-instruction directive and keeps the file's settings.
      return base;
    }
    return {
      skipAll: base.skipAll || extra.skipAll,
      skip: new Set([...base.skip, ...extra.skip]),
      error: base.error || extra.error,
      experimentalAll: base.experimentalAll || extra.experimentalAll,
      experimental: new Set([...base.experimental, ...extra.experimental]),
    };
  }
  return base;
}

export function ruleEnabled(cfg: CheckConfig, rule: Rule): boolean {
  if (cfg.skipAll || cfg.skip.has(rule.name)) return false;
  if (rule.experimental && !cfg.experimentalAll && !cfg.experimental.has(rule.name)) return false;
  return true;
}
