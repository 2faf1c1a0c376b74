/**
 * Reading .dockerignore files the way BuildKit does (moby/patternmatcher/ignorefile and the
 * Dockerfile frontend's choice of file).
 */
import { readFile } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { InputFileError } from '../../errors.js';
import { goClean, goTrimSpace } from './gopath.js';

/** Go's bufio.Scanner refuses lines that do not fit its 64 KiB buffer; BuildKit then fails. */
const MAX_LINE_BYTES = 64 * 1024;

/**
 * Turns ignore-file text into the pattern list BuildKit uses:
 * - a UTF-8 BOM at the start is dropped; lines end at `\n` (a trailing `\r` is dropped);
 * - a line whose first character is `#` is a comment (`  # x` is a pattern, not a comment);
 * - each line is trimmed (Go's definition of white space) and skipped if empty;
 * - `!` followed by optional blanks marks an exception; the rest is `path.Clean`ed and one leading
 *   `/` is removed (`/a` and `a` are the same), then `!` is put back (`! /x` becomes `!x`; a lone
 *   `!` stays `!`, which the matcher rejects).
 * @param source name used in errors (the file path).
 * @throws InputFileError for a line of 64 KiB or more, which BuildKit cannot read either.
 */
export function readIgnoreFile(content: string | Uint8Array | null | undefined, source = '.dockerignore'): string[] {
  if (content === null || content === undefined) return [];
  const text = typeof content === 'string' ? content : Buffer.from(content.buffer, content.byteOffset, content.byteLength).toString('utf8');
  const lines = text.split('\n');
  if (lines[lines.length - 1] === '') lines.pop();
  const patterns: string[] = [];
  for (let n = 0; n < lines.length; n++) {
    let line = lines[n]!;
    // Only long lines can exceed the limit (a UTF-16 unit is at most 3 UTF-8 bytes).
    if (line.length * 3 >= MAX_LINE_BYTES && Buffer.byteLength(line, 'utf8') >= MAX_LINE_BYTES) {
      throw new InputFileError(source, `line ${n + 1} is longer than ${MAX_LINE_BYTES - 1} bytes`);
    }
    if (line.endsWith('\r')) line = line.slice(0, -1);
    if (n === 0 && line.startsWith('\uFEFF')) line = line.slice(1);
    if (line.startsWith('#')) continue;
    let pattern = goTrimSpace(line);
    if (pattern === '') continue;
    const invert = pattern.startsWith('!');
    if (invert) pattern = goTrimSpace(pattern.slice(1));
    if (pattern.length > 0) {
      pattern = goClean(pattern);
      if (pattern.length > 1 && pattern.startsWith('/')) pattern = pattern.slice(1);
    }
    patterns.push(invert ? '!' + pattern : pattern);
  }
  return patterns;
}

export interface IgnoreFile {
  /** Absolute path of the file that was read. */
  path: string;
  /** Its patterns, as {@link readIgnoreFile} returns them (possibly empty). */
  patterns: string[];
}

/**
 * Finds the ignore file BuildKit applies to a build context: `<Dockerfile>.dockerignore` next to
 * the Dockerfile (e.g. `app.Dockerfile.dockerignore`) if it exists, otherwise `.dockerignore` at
 * the root of the context, otherwise none.
 *
 * `dockerfilePath` is the Dockerfile as the user named it (relative paths resolve against the
 * working directory, like `-f`); without it BuildKit's default `<context>/Dockerfile` is assumed,
 * so `<context>/Dockerfile.dockerignore` still takes precedence. Pass `-` for a Dockerfile read
 * from stdin, which has no companion file.
 *
 * A Dockerfile-specific file wins even when it is empty (BuildKit's built-in frontend reads it and
 * stops looking). A candidate that is a directory counts as absent, as BuildKit ignores the read
 * error; any other read failure is reported rather than silently sending files meant to stay out.
 * @throws InputFileError when a candidate exists but cannot be read, or has an over-long line.
 */
export async function findIgnoreFile(contextDir: string, dockerfilePath?: string): Promise<IgnoreFile | undefined> {
  const context = resolve(contextDir);
  const candidates: string[] = [];
  if (dockerfilePath !== '-') {
    const dockerfile = dockerfilePath === undefined ? join(context, 'Dockerfile') : resolve(dockerfilePath);
    candidates.push(join(dirname(dockerfile), `${basename(dockerfile)}.dockerignore`));
  }
  candidates.push(join(context, '.dockerignore'));
  for (const candidate of candidates) {
    const bytes = await readIfPresent(candidate);
    if (bytes !== undefined) return { path: candidate, patterns: readIgnoreFile(bytes, candidate) };
  }
  return undefined;
}

async function readIfPresent(file: string): Promise<Buffer | undefined> {
  try {
    return await readFile(file);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR' || code === 'EISDIR') return undefined;
    throw new InputFileError(file, `cannot read ignore file: ${(err as Error).message}`, { cause: err });
  }
}
