/** Flags every registry command shares, turned into the registry client's options. */
import type { RegistryOptions } from '../../registry/index.js';

export interface RegistryFlags {
  insecureRegistry?: string[];
  authfile?: string;
}

export function registryOptions(flags: RegistryFlags): RegistryOptions {
  const opts: RegistryOptions = {};
  if (flags.insecureRegistry?.length) opts.insecureRegistries = flags.insecureRegistry;
  if (flags.authfile) opts.authFile = flags.authfile;
  return opts;
}

/** docker's short layer ID: the first 12 hex digits of a digest. */
export function shortId(digest: string): string {
  return digest.replace(/^sha256:/, '').slice(0, 12);
}
