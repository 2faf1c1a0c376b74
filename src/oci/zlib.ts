/**
 * node:zlib, loaded on first use: most commands, a cached build among them, never compress or
 * decompress anything, and the modules that can are on their import paths.
 */
import { createRequire } from 'node:module';

let loaded: typeof import('node:zlib') | undefined;

export function zlib(): typeof import('node:zlib') {
  return (loaded ??= createRequire(import.meta.url)('node:zlib') as typeof import('node:zlib'));
}
