/**
 * Shared pieces of the registry end-to-end tests: temp stores holding hand-made images, skopeo and
 * the kiln CLI run asynchronously (the token server lives in the test process, so a synchronous
 * child would deadlock against it), and small tar layers.
 */
import { execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { memoryImage } from '../../src/oci/layout/index.js';
import { MediaType } from '../../src/oci/mediatypes.js';
import type { ImageConfig } from '../../src/oci/types.js';
import { openStore, type Store } from '../../src/store/index.js';
import { REPO_ROOT } from '../conformance/harness.js';
import { tarOf } from '../helpers/registry/fixture.js';
import type { RegistryServer } from '../helpers/registry/index.js';

export const KILN_BIN = join(REPO_ROOT, 'bin/kiln.js');

export interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

export async function tempDir(prefix = 'kiln-reg-test-'): Promise<string> {
  return fsp.mkdtemp(join(tmpdir(), prefix));
}

/**
 * A fresh store holding `name`: an image with uncompressed tar layers, as kiln's own builds store
 * them (so a push has to compress them). `seed` varies the content so tests do not share blobs.
 */
export async function storeWithImage(
  name: string,
  opts: { seed?: string; extraLayerBytes?: number; config?: Partial<ImageConfig> } = {},
): Promise<{ store: Store; root: string }> {
  const root = await tempDir('kiln-store-');
  const store = await openStore({ root });
  const seed = opts.seed ?? randomBytes(8).toString('hex');
  const layers = [await tarOf({ 'etc/seed': `${seed}\n`, 'hello.txt': 'hello from kiln\n' })];
  if (opts.extraLayerBytes) layers.push(await tarOf({ 'big.bin': randomBytes(opts.extraLayerBytes) }));
  const image = memoryImage({
    layers: layers.map((blob) => ({ blob, mediaType: MediaType.ociLayer })),
    config: { architecture: 'amd64', os: 'linux', config: { Cmd: ['/bin/sh'] }, ...opts.config },
  });
  await store.putImage(image, { names: [name] });
  return { store, root };
}

/** skopeo with an auth file of its own, so nothing the machine's user logged into leaks in. */
export function skopeo(args: string[], authDir: string): Promise<Run> {
  return new Promise((resolve) => {
    execFile(
      '/usr/bin/skopeo',
      args,
      { timeout: 120_000, maxBuffer: 64 << 20, env: { ...process.env, REGISTRY_AUTH_FILE: join(authDir, 'skopeo-auth.json') } },
      (err, stdout, stderr) => {
        resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout: String(stdout), stderr: String(stderr) });
      },
    );
  });
}

/** skopeo's credential flag for a registry (nothing in anonymous mode). */
export function skopeoCreds(reg: RegistryServer, flag = '--creds'): string[] {
  return reg.username ? [flag, `${reg.username}:${reg.password}`] : [];
}

/** The compiled kiln CLI, run without blocking this process. */
export function kilnAsync(args: string[], opts: { env?: NodeJS.ProcessEnv; input?: string; timeoutMs?: number } = {}): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [KILN_BIN, ...args], { cwd: REPO_ROOT, env: opts.env ?? process.env, stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 120_000);
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code: code ?? -1, stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8') });
    });
    child.stdin.end(opts.input ?? '');
  });
}

/** An environment for CLI runs with a private docker config and no auth file. */
export function isolatedEnv(dir: string, extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, DOCKER_CONFIG: join(dir, 'docker'), HOME: join(dir, 'home'), ...extra };
  delete env.REGISTRY_AUTH_FILE;
  delete env.KILN_ROOT;
  return env;
}

/** A docker config.json with a login for the registry. */
export async function writeDockerConfig(dir: string, doc: unknown): Promise<string> {
  await fsp.mkdir(join(dir, 'docker'), { recursive: true });
  const path = join(dir, 'docker', 'config.json');
  await fsp.writeFile(path, JSON.stringify(doc), { mode: 0o600 });
  return path;
}

export const basicAuth = (user: string, password: string): string => Buffer.from(`${user}:${password}`).toString('base64');

/** Path of a blob's data file in the registry's filesystem storage. */
export function registryBlobPath(reg: RegistryServer, digest: string): string {
  const hex = digest.slice('sha256:'.length);
  return join(reg.storageDir, 'docker', 'registry', 'v2', 'blobs', 'sha256', hex.slice(0, 2), hex, 'data');
}
