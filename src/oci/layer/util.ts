/** Small helpers shared by the layer writer and extractor. */

/**
 * The errno name of a failure: Node's fs errors carry it as `code`; @napi-rs/xattr only says
 * "… (os error N)" in its message.
 */
export function errnoOf(err: unknown): string | undefined {
  if (typeof err !== 'object' || err === null) return undefined;
  const code = (err as { code?: unknown }).code;
  if (typeof code === 'string' && code.startsWith('E')) return code;
  // @napi-rs/xattr reports "… (os error N)" with a generic code.
  const m = /os error (\d+)/.exec(String((err as { message?: unknown }).message));
  if (!m) return undefined;
  return ERRNO_NAMES[Number(m[1])] ?? `errno ${m[1]}`;
}

const ERRNO_NAMES: Record<number, string> = {
  1: 'EPERM',
  2: 'ENOENT',
  5: 'EIO',
  7: 'E2BIG',
  13: 'EACCES',
  17: 'EEXIST',
  20: 'ENOTDIR',
  22: 'EINVAL',
  28: 'ENOSPC',
  30: 'EROFS',
  34: 'ERANGE',
  61: 'ENODATA',
  95: 'ENOTSUP',
};

export function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
