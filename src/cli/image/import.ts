/**
 * `kiln import FILE|- [REF]`: `docker import`. A root filesystem tar (or `-`, standard input)
 * becomes a one-layer image, recorded under REF (default tag `latest`) or by ID only; the image ID
 * is printed. The history entry's comment is the `-m` message, or docker's `Imported from -`.
 * The image's creation time is now, or SOURCE_DATE_EPOCH when set, so the same tar imported twice
 * with the same SOURCE_DATE_EPOCH gives the same image ID.
 */
import { openStoreForCommand } from '../store.js';
import { promises as fsp } from 'node:fs';
import { InputFileError, UsageError } from '../../errors.js';
import { hostPlatform, parsePlatform } from '../../oci/platform.js';
import { normalizeName } from '../../oci/reference.js';
import { withStoreWorkDir } from './io.js';

export interface ImportOptions {
  message?: string;
  platform?: string;
}

/** SOURCE_DATE_EPOCH as a date, when set (seconds since the epoch, as reproducible-builds.org defines it). */
export function sourceDateEpoch(env: NodeJS.ProcessEnv = process.env): Date | undefined {
  const raw = env.SOURCE_DATE_EPOCH;
  if (raw === undefined || raw === '') return undefined;
  if (!/^\d+$/.test(raw)) throw new UsageError(`invalid SOURCE_DATE_EPOCH "${raw}": expected a number of seconds since 1970-01-01`);
  return new Date(Number(raw) * 1000);
}

export async function runImport(root: string, source: string, ref: string | undefined, options: ImportOptions): Promise<void> {
  // Everything the user typed is checked before the (possibly large) input is read.
  const names = ref ? [normalizeName(ref)] : [];
  const platform = options.platform ? parsePlatform(options.platform) : hostPlatform();
  const created = sourceDateEpoch() ?? new Date();
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(source)) {
    throw new UsageError(`importing from a URL is not supported: ${source}`, { hint: 'download the file first, then import it (or pipe it to `kiln import -`)' });
  }
  if (source !== '-') {
    try {
      await fsp.stat(source);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      throw new InputFileError(source, code === 'ENOENT' ? 'no such file or directory' : `cannot read: ${String(code ?? err)}`, { cause: err });
    }
  }
  const store = await openStoreForCommand(root);
  const { importRootfs } = await import('../../oci/formats/index.js');
  const id = await withStoreWorkDir(store, 'import', async (tmpDir) => {
    const image = await importRootfs(source === '-' ? process.stdin : source, {
      platform,
      created,
      history: options.message ?? 'Imported from -',
      tmpDir,
      ...(source === '-' ? { name: 'stdin' } : {}),
    });
    try {
      await store.putImage(image, { names });
      return await image.configName();
    } finally {
      await image.close();
    }
  });
  process.stdout.write(`${id}\n`);
}
