/**
 * Fixtures for the COPY/ADD and file-view tests: small trees built on disk (files, directories,
 * symlinks, hardlinks, overlay whiteouts and opaque markers, with owners and times), a busybox-like
 * two-layer rootfs, and a reader that turns a layer tar into plain records.
 */
import { spawnSync } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import type { Readable } from 'node:stream';
import { setAttributeSync } from '@napi-rs/xattr';
import { createExtract } from '../../src/oci/layer/tar.js';

export const IS_ROOT = process.getuid?.() === 0;

export interface NodeOptions {
  mode?: number;
  uid?: number;
  gid?: number;
  /** Seconds since the epoch. */
  mtime?: number;
}

export async function tempDir(prefix = 'kiln-copy-test-'): Promise<string> {
  return fsp.mkdtemp(join(tmpdir(), prefix));
}

async function finish(path: string, o: NodeOptions, symlink = false): Promise<void> {
  if (o.uid !== undefined || o.gid !== undefined) {
    if (IS_ROOT) await fsp.lchown(path, o.uid ?? 0, o.gid ?? 0);
  }
  if (o.mode !== undefined && !symlink) await fsp.chmod(path, o.mode);
  if (o.mtime !== undefined) await fsp.lutimes(path, o.mtime, o.mtime);
}

export async function file(root: string, rel: string, content: string | Buffer = '', o: NodeOptions = {}): Promise<string> {
  const p = join(root, rel);
  await fsp.mkdir(dirname(p), { recursive: true });
  await fsp.writeFile(p, content);
  await finish(p, { mode: 0o644, ...o });
  return p;
}

/** Directory times set with `dir`, re-applied by `settleTimes` once the tree is filled. */
const dirTimes: Array<[string, number]> = [];

export async function dir(root: string, rel: string, o: NodeOptions = {}): Promise<string> {
  const p = join(root, rel);
  await fsp.mkdir(p, { recursive: true });
  await finish(p, { mode: 0o755, ...o });
  if (o.mtime !== undefined) dirTimes.push([p, o.mtime]);
  return p;
}

/** Creating entries in a directory changes its time: re-apply the times given to `dir` (deepest first). */
export async function settleTimes(): Promise<void> {
  const list = dirTimes.splice(0).sort((a, b) => b[0].length - a[0].length);
  for (const [p, t] of list) await fsp.utimes(p, t, t).catch(() => undefined);
}

export async function symlink(root: string, rel: string, target: string, o: NodeOptions = {}): Promise<string> {
  const p = join(root, rel);
  await fsp.mkdir(dirname(p), { recursive: true });
  await fsp.symlink(target, p);
  await finish(p, o, true);
  return p;
}

export async function hardlink(root: string, rel: string, existing: string): Promise<string> {
  const p = join(root, rel);
  await fsp.mkdir(dirname(p), { recursive: true });
  await fsp.link(join(root, existing), p);
  return p;
}

/** An overlay whiteout: a character device 0/0 (mknod works unprivileged for 0/0). */
export async function whiteout(root: string, rel: string): Promise<void> {
  const p = join(root, rel);
  await fsp.mkdir(dirname(p), { recursive: true });
  const r = spawnSync('mknod', [p, 'c', '0', '0']);
  if (r.status !== 0) throw new Error(`mknod ${p}: ${r.stderr.toString()}`);
}

export async function opaque(root: string, rel: string): Promise<void> {
  const p = join(root, rel);
  await fsp.mkdir(p, { recursive: true });
  setAttributeSync(p, 'user.overlay.opaque', 'y');
}

export const T0 = 1_600_000_000;

/**
 * A busybox-like rootfs in two snapshot layers (returned topmost first):
 *   lower: bin/{busybox,sh->busybox,ls->busybox}, etc/{passwd,group}, run/, var/run -> /run,
 *          tmp (1777), home/app (1000:1000, 0750), opt/existing (500:600, 0700) with a file,
 *          usr/local/bin, srv/data/{a,b}
 *   upper: bin/ls whited out, srv/data opaque with only c, etc/motd
 */
export async function busyboxLayers(base: string): Promise<string[]> {
  const lower = join(base, 'lower');
  const upper = join(base, 'upper');
  await dir(lower, '.', { mtime: T0 });
  await dir(lower, 'bin', { mtime: T0 });
  await file(lower, 'bin/busybox', '#!busybox', { mode: 0o755, mtime: T0 });
  await symlink(lower, 'bin/sh', 'busybox');
  await symlink(lower, 'bin/ls', 'busybox');
  await dir(lower, 'etc', { mtime: T0 + 1 });
  await file(
    lower,
    'etc/passwd',
    'root:x:0:0:root:/root:/bin/sh\ndaemon:x:1:1:daemon:/usr/sbin:/bin/false\napp:x:1000:1000:App:/home/app:/bin/sh\nweb:x:33:33::/var/www:/bin/false\n',
    { mtime: T0 },
  );
  await file(lower, 'etc/group', 'root:x:0:\ndaemon:x:1:\nwheel:x:10:app\nstaff:x:50:app,web\napp:x:1000:\n', { mtime: T0 });
  await dir(lower, 'run', { mtime: T0 + 2 });
  await dir(lower, 'var', { mtime: T0 + 3 });
  await symlink(lower, 'var/run', '/run');
  await dir(lower, 'tmp', { mode: 0o1777, mtime: T0 });
  await dir(lower, 'home', { mtime: T0 });
  await dir(lower, 'home/app', { mode: 0o750, uid: 1000, gid: 1000, mtime: T0 + 4 });
  await dir(lower, 'opt', { mtime: T0 + 5 });
  await dir(lower, 'opt/existing', { mode: 0o700, uid: 500, gid: 600, mtime: T0 + 6 });
  await file(lower, 'opt/existing/existingfile', 'old', { uid: 501, gid: 601, mtime: T0 });
  await dir(lower, 'usr/local/bin', { mtime: T0 });
  await file(lower, 'srv/data/a', 'a', { mtime: T0 });
  await file(lower, 'srv/data/b', 'b', { mtime: T0 });

  await dir(upper, '.', { mtime: T0 + 10 });
  await dir(upper, 'bin', { mtime: T0 + 10 });
  await whiteout(upper, 'bin/ls');
  await opaque(upper, 'srv/data');
  await file(upper, 'srv/data/c', 'c', { mtime: T0 + 10 });
  await dir(upper, 'etc', { mtime: T0 + 11 });
  await file(upper, 'etc/motd', 'hello', { mtime: T0 + 10 });
  await settleTimes();
  return [upper, lower];
}

export interface TarRecord {
  name: string;
  type: string;
  mode: number;
  uid: number;
  gid: number;
  mtime: number;
  size: number;
  linkname?: string;
  content?: string;
}

/** Reads a tar stream into records (content as UTF-8 for regular files). */
export async function readTar(stream: Readable): Promise<TarRecord[]> {
  const ex = createExtract();
  stream.on('error', (err) => ex.destroy(err));
  stream.pipe(ex as unknown as NodeJS.WritableStream);
  const out: TarRecord[] = [];
  for await (const entry of ex as AsyncIterable<AsyncIterable<Buffer> & { header: import('tar-stream').Header }>) {
    const h = entry.header;
    const chunks: Buffer[] = [];
    for await (const c of entry) chunks.push(c);
    out.push({
      name: h.name,
      type: h.type ?? 'unknown',
      mode: (h.mode ?? 0) & 0o7777,
      uid: h.uid ?? 0,
      gid: h.gid ?? 0,
      mtime: Math.floor((h.mtime?.getTime() ?? 0) / 1000),
      size: h.size ?? 0,
      ...(h.linkname ? { linkname: h.linkname } : {}),
      ...(h.type === 'file' ? { content: Buffer.concat(chunks).toString('utf8') } : {}),
    });
  }
  return out;
}

export function byName(records: TarRecord[]): Map<string, TarRecord> {
  return new Map(records.map((r) => [r.name, r]));
}
