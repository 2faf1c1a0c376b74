/**
 * Helpers for the `kiln build` end-to-end tests: the build fixtures copied where a build (or an
 * unprivileged user) can read them, the CLI run without blocking (so independent builds overlap),
 * and the results read back as a user would look at them: image tars entry by entry, `kiln inspect`.
 */
import { spawn } from 'node:child_process';
import { createReadStream, promises as fsp } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { createGunzip } from 'node:zlib';
import { extract, type Header } from 'tar-stream';
import { REPO_ROOT } from '../conformance/harness.js';
import { KILN_BIN, type RunResult } from './kiln.js';

export const BUILD_FIXTURES = join(REPO_ROOT, 'fixtures/build');

export interface KilnRunOptions {
  env?: NodeJS.ProcessEnv;
  /** Standard input (for `-f -`). */
  input?: string;
  cwd?: string;
  /** Run as this user (through runuser), as an unprivileged user would run kiln. */
  user?: string;
}

/** `kiln --root ROOT ARGS...` without blocking the event loop, so several builds can run at once. */
export function kilnRun(root: string, args: string[], options: KilnRunOptions = {}): Promise<RunResult> {
  const env = options.env ?? process.env;
  const node = [process.execPath, KILN_BIN, '--root', root, ...args];
  // runuser resets nothing we pass through `env`; the user gets its own HOME.
  const argv = options.user
    ? ['runuser', '-u', options.user, '--', 'env', ...passEnv(env), ...node]
    : node;
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0]!, argv.slice(1), {
      cwd: options.cwd ?? REPO_ROOT,
      env: options.user ? { PATH: process.env.PATH ?? '/usr/bin:/bin' } : env,
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.once('error', reject);
    child.once('close', (status) => resolve({ status, stdout, stderr }));
    child.stdin.end(options.input ?? '');
  });
}

/** The variables a build needs when it runs as another user: ours, minus the ones that name root's home. */
function passEnv(env: NodeJS.ProcessEnv): string[] {
  const skip = new Set(['HOME', 'USER', 'LOGNAME', 'XDG_RUNTIME_DIR', 'KILN_ROOT', 'TMPDIR']);
  return Object.entries(env)
    .filter(([k, v]) => v !== undefined && !skip.has(k) && /^[A-Za-z_][A-Za-z0-9_]*$/.test(k))
    .map(([k, v]) => `${k}=${v}`);
}

/** Fails with the build's output when it did not succeed. */
export function expectOk(r: RunResult, what = 'kiln'): RunResult {
  if (r.status !== 0) throw new Error(`${what} exited ${r.status}:\n${r.stderr}${r.stdout}`);
  return r;
}

/**
 * Copies fixture `name` to `dest` as a fresh checkout would have it: files 0644 (0755 when
 * executable), directories 0755, symlinks kept, whatever the umask of the checkout this runs in.
 */
export async function copyFixture(name: string, dest: string): Promise<string> {
  await copyTree(join(BUILD_FIXTURES, name), dest);
  return dest;
}

async function copyTree(src: string, dest: string): Promise<void> {
  await fsp.mkdir(dest, { recursive: true });
  await fsp.chmod(dest, 0o755);
  for (const entry of await fsp.readdir(src, { withFileTypes: true })) {
    const from = join(src, entry.name);
    const to = join(dest, entry.name);
    if (entry.isDirectory()) await copyTree(from, to);
    else if (entry.isSymbolicLink()) await fsp.symlink(await fsp.readlink(from), to);
    else {
      await fsp.copyFile(from, to);
      const executable = ((await fsp.stat(from)).mode & 0o100) !== 0;
      await fsp.chmod(to, executable ? 0o755 : 0o644);
    }
  }
}

export interface TarEntry {
  /** Path without a leading `./` or `/`, and without the trailing `/` of directories. */
  name: string;
  type: Header['type'];
  mode: number;
  uid: number;
  gid: number;
  mtime: number;
  linkname?: string;
  data: Buffer;
}

/** Every entry of a tar (gzip-compressed or not), in order, keyed by path. */
export async function readTar(input: string | Buffer): Promise<Map<string, TarEntry>> {
  const raw = typeof input === 'string' ? createReadStream(input) : Readable.from([input]);
  const head = typeof input === 'string' ? await firstBytes(input) : input.subarray(0, 2);
  const stream = head[0] === 0x1f && head[1] === 0x8b ? raw.pipe(createGunzip()) : raw;
  const out = new Map<string, TarEntry>();
  const ex = extract();
  const done = new Promise<void>((resolve, reject) => {
    ex.on('entry', (h, body, next) => {
      const chunks: Buffer[] = [];
      body.on('data', (c: unknown) => chunks.push(c as Buffer));
      body.on('end', () => {
        const name = h.name.replace(/^\.?\/+/, '').replace(/\/+$/, '');
        out.set(name, {
          name,
          type: h.type,
          mode: (h.mode ?? 0) & 0o7777,
          uid: h.uid ?? 0,
          gid: h.gid ?? 0,
          mtime: Math.floor((h.mtime?.getTime() ?? 0) / 1000),
          ...(h.linkname ? { linkname: h.linkname } : {}),
          data: Buffer.concat(chunks),
        });
        next();
      });
      body.on('error', reject);
    });
    ex.on('finish', resolve);
    ex.on('error', reject);
    stream.on('error', reject);
  });
  stream.pipe(ex);
  await done;
  return out;
}

async function firstBytes(path: string): Promise<Buffer> {
  const fh = await fsp.open(path, 'r');
  try {
    const b = Buffer.alloc(2);
    await fh.read(b, 0, 2, 0);
    return b;
  } finally {
    await fh.close();
  }
}

/** The text of a regular file entry (fails naming the path when it is missing or not a file). */
export function text(entries: Map<string, TarEntry>, path: string): string {
  const e = entries.get(path);
  if (!e) throw new Error(`${path} is not in the image`);
  if (e.type !== 'file') throw new Error(`${path} is a ${e.type}, not a file`);
  return e.data.toString('utf8');
}

/** An OCI image layout directory (`-o type=oci,tar=false`) read back: manifest, config, layer tars. */
export interface OciImage {
  manifest: { layers: Array<{ digest: string; mediaType: string }>; config: { digest: string }; annotations?: Record<string, string> };
  config: {
    config: Record<string, unknown>;
    rootfs: { diff_ids: string[] };
    history: Array<{ created_by?: string; empty_layer?: boolean; created?: string; comment?: string }>;
    created?: string;
    author?: string;
  };
  layers: Array<Map<string, TarEntry>>;
}

export async function readOciLayout(dir: string): Promise<OciImage> {
  const blob = (digest: string) => join(dir, 'blobs', ...digest.split(':'));
  const index = JSON.parse(await fsp.readFile(join(dir, 'index.json'), 'utf8'));
  const manifest = JSON.parse(await fsp.readFile(blob(index.manifests[0].digest), 'utf8'));
  const config = JSON.parse(await fsp.readFile(blob(manifest.config.digest), 'utf8'));
  const layers = [];
  for (const l of manifest.layers) layers.push(await readTar(blob(l.digest)));
  return { manifest, config, layers };
}

/** `kiln inspect`'s first element. */
export async function inspect(root: string, ref: string): Promise<{ Id: string; Config: Record<string, any>; RootFS: { Layers: string[] }; Author?: string; Os: string; Architecture: string }> {
  const r = expectOk(await kilnRun(root, ['inspect', ref]), `kiln inspect ${ref}`);
  return JSON.parse(r.stdout)[0];
}

/** The `created_by` of each history entry, oldest first, via `kiln history`. */
export async function historyOf(root: string, ref: string): Promise<Array<{ createdBy: string; size: string }>> {
  const r = expectOk(await kilnRun(root, ['history', '--no-trunc', '--format', '{{json .}}', ref]), `kiln history ${ref}`);
  return r.stdout
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as { CreatedBy: string; Size: string })
    .map((h) => ({ createdBy: h.CreatedBy, size: h.Size }))
    .reverse();
}

/** The OCI architecture of this machine, as TARGETARCH names it. */
export function hostArch(): string {
  const map: Record<string, string> = { x64: 'amd64', arm64: 'arm64', arm: 'arm', ia32: '386', ppc64: 'ppc64le', s390x: 's390x', riscv64: 'riscv64' };
  return map[process.arch] ?? process.arch;
}

/** Runs `jobs` at most `n` at a time; resolves with their results in order. */
export async function inParallel<T>(n: number, jobs: Array<() => Promise<T>>): Promise<T[]> {
  const results: T[] = new Array(jobs.length);
  let next = 0;
  const worker = async () => {
    while (next < jobs.length) {
      const i = next++;
      results[i] = await jobs[i]!();
    }
  };
  await Promise.all(Array.from({ length: Math.min(n, jobs.length) }, worker));
  return results;
}

/**
 * A static file server on loopback (what ADD downloads from and git fetches over dumb HTTP). It
 * sends an ETag and answers a matching If-None-Match with 304; `log` has every answer.
 */
export async function serveDirectory(
  dir: string,
): Promise<{ url: string; requests: string[]; log: Array<{ path: string; status: number; conditional: boolean }>; close(): Promise<void> }> {
  const http = await import('node:http');
  const { createHash } = await import('node:crypto');
  const requests: string[] = [];
  const log: Array<{ path: string; status: number; conditional: boolean }> = [];
  const server = http.createServer((req, res) => {
    const path = decodeURIComponent(new URL(req.url ?? '/', 'http://localhost').pathname);
    requests.push(path);
    const conditional = req.headers['if-none-match'] !== undefined;
    const answer = (status: number, headers: Record<string, string | number> = {}, body?: Buffer) => {
      log.push({ path, status, conditional });
      res.writeHead(status, headers).end(body);
    };
    if (path.split('/').includes('..')) {
      answer(400);
      return;
    }
    fsp.readFile(join(dir, path)).then(
      (body) => {
        const etag = `"${createHash('sha256').update(body).digest('hex').slice(0, 16)}"`;
        // A fixed Last-Modified: ADD gives the downloaded file this time.
        const lastModified = new Date(LAST_MODIFIED * 1000).toUTCString();
        if (req.headers['if-none-match'] === etag) answer(304, { ETag: etag, 'Last-Modified': lastModified });
        else answer(200, { 'Content-Length': body.length, ETag: etag, 'Last-Modified': lastModified }, body);
      },
      () => answer(404),
    );
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    log,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

/** The Last-Modified time serveDirectory sends: 2024-01-02T00:00:00Z. */
export const LAST_MODIFIED = 1_704_153_600;
