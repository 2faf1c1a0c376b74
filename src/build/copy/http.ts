/**
 * ADD of an http(s) URL, as BuildKit's http source does it: the body is streamed to a file (never
 * held in memory) while it is hashed; the file is mode 0600, owned by root, with the
 * Last-Modified time (or the epoch when there is none); `--checksum` must match or the step fails
 * naming the URL and both digests. Redirects are followed (up to 10, as Go's client does).
 */
import { createHash } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { trustedCAs } from '../../registry/transport/tls.js';
import { ChecksumMismatchError, CopyError } from './errors.js';
import type { TempSpace } from './temp.js';

export interface Download {
  /** Host path of the downloaded file. */
  path: string;
  size: number;
  /** Seconds since the epoch: Last-Modified, or 0. */
  mtime: number;
  /** sha256 of the content. */
  digest: string;
  /** The response's validators, for a conditional request the next time. */
  etag?: string;
  lastModified?: string;
}

/** What an earlier download of the same URL answered: sent back to ask whether it changed. */
export interface Validators {
  etag?: string;
  lastModified?: string;
}

const MAX_REDIRECTS = 10;
const ALGORITHMS: Record<string, { hash: string; hexLength: number }> = {
  sha256: { hash: 'sha256', hexLength: 64 },
  sha384: { hash: 'sha384', hexLength: 96 },
  sha512: { hash: 'sha512', hexLength: 128 },
};

/** Validates a `--checksum` digest for a URL (`<algorithm>:<hex>`). */
export function parseChecksumDigest(value: string): { algorithm: string; hex: string } {
  const m = /^([a-z0-9]+):([a-f0-9]+)$/.exec(value);
  const algo = m ? ALGORITHMS[m[1]!] : undefined;
  if (!m || !algo || m[2]!.length !== algo.hexLength) {
    throw new CopyError('ADD_BAD_CHECKSUM', `invalid checksum digest format: "${value}"`, {
      hint: 'give the digest as sha256:<64 hex digits> (sha384 and sha512 work too)',
    });
  }
  return { algorithm: m[1]!, hex: m[2]! };
}

export async function download(url: string, temp: TempSpace, options: { checksum?: string; signal?: AbortSignal } = {}): Promise<Download> {
  const got = await downloadIfChanged(url, temp, options);
  // Without validators the server has nothing to compare with: it answers with the content.
  if (got === 'not-modified') throw new CopyError('ADD_DOWNLOAD', `failed to download ${url}: unexpected 304 Not Modified`);
  return got;
}

/**
 * `download`, or with `validators` (an earlier response's ETag and Last-Modified), `not-modified`
 * when the server says the content has not changed since, as BuildKit asks on a rebuild.
 */
export async function downloadIfChanged(
  url: string,
  temp: TempSpace,
  options: { checksum?: string; signal?: AbortSignal; validators?: Validators } = {},
): Promise<Download | 'not-modified'> {
  const expected = options.checksum ? parseChecksumDigest(options.checksum) : undefined;
  const res = await get(url, options.signal, options.validators);
  if (res === 'not-modified') return res;
  const path = await temp.path('download');
  const fh = await fsp.open(path, 'wx', 0o600);
  const sha256 = createHash('sha256');
  const other = expected && expected.algorithm !== 'sha256' ? createHash(ALGORITHMS[expected.algorithm]!.hash) : undefined;
  let size = 0;
  try {
    for await (const chunk of res) {
      const buf = chunk as Buffer;
      sha256.update(buf);
      other?.update(buf);
      size += buf.length;
      await fh.write(buf);
    }
  } catch (err) {
    throw new CopyError('ADD_DOWNLOAD', `failed to download ${url}: ${(err as Error).message}`, { cause: err });
  } finally {
    await fh.close();
  }
  const digest = `sha256:${sha256.digest('hex')}`;
  if (expected) {
    const got = other ? `${expected.algorithm}:${other.digest('hex')}` : digest;
    const want = `${expected.algorithm}:${expected.hex}`;
    if (got !== want) throw new ChecksumMismatchError(url, got, want);
  }
  const lastModified = res.headers['last-modified'];
  const parsed = lastModified ? Date.parse(lastModified) : NaN;
  const mtime = Number.isFinite(parsed) ? Math.floor(parsed / 1000) : 0;
  await fsp.utimes(path, mtime, mtime);
  const etag = res.headers.etag;
  return { path, size, mtime, digest, ...(etag ? { etag } : {}), ...(lastModified ? { lastModified } : {}) };
}

/** GET with redirects; resolves once a 2xx response's headers are in (or with a 304 to a conditional GET). */
async function get(url: string, signal: AbortSignal | undefined, validators?: Validators): Promise<IncomingMessage | 'not-modified'> {
  let current = url;
  for (let hop = 0; ; hop++) {
    let parsed: URL;
    try {
      parsed = new URL(current);
    } catch {
      throw new CopyError('ADD_DOWNLOAD', `failed to download ${url}: invalid URL ${current}`);
    }
    const res = await once(parsed, signal, validators).catch((err: Error) => {
      throw new CopyError('ADD_DOWNLOAD', `failed to download ${url}: ${err.message}`, { cause: err });
    });
    const status = res.statusCode ?? 0;
    if (status === 304 && validators) {
      res.resume();
      return 'not-modified';
    }
    if (status >= 300 && status < 400 && res.headers.location) {
      res.resume();
      if (hop >= MAX_REDIRECTS) throw new CopyError('ADD_DOWNLOAD', `failed to download ${url}: stopped after ${MAX_REDIRECTS} redirects`);
      current = new URL(res.headers.location, parsed).href;
      continue;
    }
    if (status < 200 || status >= 400) {
      res.resume();
      throw new CopyError('ADD_DOWNLOAD', `failed to download ${url}: invalid response status ${status}`);
    }
    return res;
  }
}

async function once(url: URL, signal: AbortSignal | undefined, validators?: Validators): Promise<IncomingMessage> {
  // The CAs registries are trusted with (the extra ones included: see extraCAFile).
  const ca = url.protocol === 'https:' ? await trustedCAs() : undefined;
  return new Promise((resolve, reject) => {
    const fn = url.protocol === 'https:' ? httpsRequest : url.protocol === 'http:' ? httpRequest : undefined;
    if (!fn) {
      reject(new Error(`unsupported protocol ${url.protocol}`));
      return;
    }
    const headers: Record<string, string> = { 'user-agent': 'kiln', 'accept-encoding': 'identity' };
    if (validators?.etag) headers['if-none-match'] = validators.etag;
    if (validators?.lastModified) headers['if-modified-since'] = validators.lastModified;
    const req = fn(url, { method: 'GET', headers, signal, ...(ca ? { ca } : {}) }, resolve);
    req.on('error', reject);
    req.end();
  });
}
