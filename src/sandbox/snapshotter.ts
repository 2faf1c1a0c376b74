/**
 * How a RUN step gets its root file system.
 *
 * `overlay` (the normal case): the store's unpacked layers are overlay lowerdirs, a fresh upper dir
 * collects the step's changes, and the upper dir *is* the diff. Mounted with `userxattr` (mandatory
 * rootless, and used as root too so the upper dir has one format), relative lowerdirs resolved from
 * the store root (the kernel caps mount options at one page; 120 layers of absolute paths would not
 * fit), `volatile` where the kernel has it (the upper dir is thrown away after the diff, so syncing it
 * at unmount is wasted time).
 *
 * `copy` (where overlay cannot be mounted, e.g. old kernels refuse it in a user namespace): the
 * layers are applied into a plain directory, the step runs in it, and the diff is found by comparing
 * the tree with the layers. Slower, chosen automatically, and reported by `kiln doctor`.
 */
import { spawn } from 'node:child_process';
import {
  copyFileSync,
  constants as fsc,
  linkSync,
  lstatSync,
  lutimesSync,
  mkdirSync,
  readdirSync,
  readlinkSync,
  rmSync,
  symlinkSync,
  type Stats,
} from 'node:fs';
import { promises as fsp } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import type { Digest } from '../oci/digest.js';
import { tempName } from '../oci/layout/fs.js';
import type { Lease } from '../store/leases.js';
import type { Snapshot } from '../store/snapshots.js';
import type { LowerDirs, Store } from '../store/store.js';
import { ownerTag } from '../store/owner.js';
import { removeTree } from '../store/snapshots.js';
import { copyMetadata, isOpaqueDir } from './layers.js';
import { hostTools } from './tools.js';

export type SnapshotterKind = 'overlay' | 'copy';

export interface OverlaySupport {
  available: boolean;
  /** The kernel accepts `volatile` (5.10+). */
  volatile: boolean;
  /** Why overlay is unavailable: the mount's error. */
  reason?: string;
}

const probes = new Map<string, Promise<OverlaySupport>>();

/**
 * Mounts a real overlay (lower with a file and a directory, rm of both through the mount, whiteouts
 * in the upper dir) in a private mount namespace under `tmpDir`. Cached per directory for the life
 * of the process.
 */
export function probeOverlay(tmpDir: string): Promise<OverlaySupport> {
  let p = probes.get(tmpDir);
  if (!p) {
    p = runOverlayProbe(tmpDir);
    probes.set(tmpDir, p);
  }
  return p;
}

const PROBE_SCRIPT = `set -e
mkdir -p l/d u w m
echo x > l/f
echo y > l/d/g
try() { mount -n -t overlay overlay -o "lowerdir=l,upperdir=u,workdir=w,userxattr$1" m; }
if try ,volatile 2>/dev/null; then v=volatile; else rm -rf w/* u/*; try "" || exit 3; v=plain; fi
rm m/f
rm -r m/d
mkdir m/d
[ -c u/f ] || { echo "no whiteout in the upper dir" >&2; exit 4; }
echo "ok $v"
`;

async function runOverlayProbe(tmpDir: string): Promise<OverlaySupport> {
  const dir = join(tmpDir, tempName(ownerTag(), '.probe'));
  await fsp.mkdir(dir, { recursive: true });
  try {
    const { unshare } = hostTools();
    const out = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
      const child = spawn(unshare, ['--mount', '--', '/bin/sh', '-c', PROBE_SCRIPT], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      child.on('error', (err) => resolve({ code: -1, stdout, stderr: err.message }));
      child.on('close', (code) => resolve({ code, stdout, stderr }));
    });
    const m = /^ok (volatile|plain)/m.exec(out.stdout);
    if (out.code === 0 && m) return { available: true, volatile: m[1] === 'volatile' };
    return { available: false, volatile: false, reason: (out.stderr.trim().split('\n').pop() ?? '') || `probe exited with ${out.code}` };
  } finally {
    await removeAsRoot(dir);
  }
}

/** rm -rf that copes with overlay's `work/work` (mode 000) and other unreadable debris. */
export async function removeAsRoot(path: string): Promise<void> {
  await removeTree(path);
}

/** The snapshotter a step uses: `requested` unless `auto`, else overlay when the probe mounts one. */
export async function chooseSnapshotter(
  tmpDir: string,
  requested: 'auto' | SnapshotterKind = (process.env.KILN_SNAPSHOTTER as SnapshotterKind | undefined) ?? 'auto',
): Promise<{ kind: SnapshotterKind; volatile: boolean; reason?: string }> {
  if (requested === 'copy') return { kind: 'copy', volatile: false, reason: 'requested' };
  const probe = await probeOverlay(tmpDir);
  if (probe.available) return { kind: 'overlay', volatile: probe.volatile };
  return { kind: 'copy', volatile: false, reason: probe.reason ?? 'overlay cannot be mounted' };
}

/**
 * Overlay lowerdirs for a chain of layers (bottom first, as in an image config), unpacking missing
 * snapshots from the store's blobs: what a build uses for the step after a RUN, whose lower is the
 * base image's layers plus the layers committed so far.
 */
export async function lowerDirsFor(store: Store, diffIDs: Digest[], opts: { lease?: Lease } = {}): Promise<LowerDirs> {
  const seen = new Set<Digest>();
  const topFirst: Digest[] = [];
  for (let i = diffIDs.length - 1; i >= 0; i--) {
    if (seen.has(diffIDs[i]!)) continue;
    seen.add(diffIDs[i]!);
    topFirst.push(diffIDs[i]!);
  }
  const snapshots = [];
  for (const d of topFirst) snapshots.push(await store.snapshotFor(d, () => store.openUncompressed(d), opts.lease ? { lease: opts.lease } : {}));
  const lowerdirs = snapshots.map((s) => s.link);
  return { cwd: store.root, lowerdirs, absolute: snapshots.map((s) => s.fs), option: `lowerdir=${lowerdirs.join(':')}`, snapshots };
}

/**
 * `lower` with one more layer on top, without touching the disk: the lowerdir of the step after a
 * RUN whose layer was unpacked as `snapshot` (runStep's `snapshot: true`).
 */
export function withLayerOnTop(lower: LowerDirs, snapshot: Snapshot): LowerDirs {
  // A layer already in the stack is mounted only at its topmost position (see Store.lowerDirs).
  const keep = lower.snapshots.map((s, i) => (s.diffID === snapshot.diffID ? -1 : i)).filter((i) => i >= 0);
  const lowerdirs = [snapshot.link, ...keep.map((i) => lower.lowerdirs[i]!)];
  return {
    cwd: lower.cwd,
    lowerdirs,
    absolute: [snapshot.fs, ...keep.map((i) => lower.absolute[i]!)],
    option: `lowerdir=${lowerdirs.join(':')}`,
    snapshots: [snapshot, ...keep.map((i) => lower.snapshots[i]!)],
  };
}

// ------------------------------------------------------------------------- copy snapshotter

/** Applies overlay-form layers (topmost first) into `dest`, bottom layer first. */
export function applyLayers(lowersTopFirst: string[], dest: string): void {
  mkdirSync(dest, { recursive: true });
  const bottom = lowersTopFirst[lowersTopFirst.length - 1];
  if (bottom) copyMetadata(bottom, dest, lstatSync(bottom));
  for (let i = lowersTopFirst.length - 1; i >= 0; i--) applyDir(lowersTopFirst[i]!, dest, new Map());
}

function applyDir(src: string, dst: string, links: Map<string, string>): void {
  for (const name of readdirSync(src)) {
    const s = join(src, name);
    const d = join(dst, name);
    const st = lstatSync(s);
    const existing = lstatOrUndefined(d);
    if (st.isCharacterDevice() && st.rdev === 0) {
      if (existing) rmSync(d, { recursive: true, force: true });
      continue;
    }
    if (st.isDirectory()) {
      if (existing && (!existing.isDirectory() || isOpaqueDir(s))) rmSync(d, { recursive: true, force: true });
      if (!existing || !existing.isDirectory() || isOpaqueDir(s)) mkdirSync(d);
      copyMetadata(s, d, st);
      applyDir(s, d, links);
      lutimesSync(d, st.atime, st.mtime);
      continue;
    }
    if (existing) rmSync(d, { recursive: true, force: true });
    copyNode(s, d, st, links);
  }
}

/** Copies one non-directory, keeping hardlinks between files of the same layer. */
export function copyNode(src: string, dst: string, st: Stats, links: Map<string, string>): void {
  if (st.isFile() && st.nlink > 1) {
    const key = `${st.dev}:${st.ino}`;
    const first = links.get(key);
    if (first) {
      linkSync(first, dst);
      return;
    }
    links.set(key, dst);
  }
  if (st.isFile()) {
    copyFileSync(src, dst, fsc.COPYFILE_FICLONE);
  } else if (st.isSymbolicLink()) {
    symlinkSync(readlinkSync(src), dst);
  } else {
    // FIFOs and device nodes: Node has no mknod.
    const type = st.isFIFO() ? ['p'] : [st.isCharacterDevice() ? 'c' : 'b', String(Math.floor(st.rdev / 256) & 0xfff), String((st.rdev & 0xff) | ((st.rdev >> 12) & 0xfff00))];
    const r = spawnSync('mknod', [dst, ...type]);
    if (r.status !== 0) return; // a device the kernel refuses here (rootless): the layer keeps it, the sandbox cannot
  }
  copyMetadata(src, dst, st);
  lutimesSync(dst, st.atime, st.mtime);
}

function lstatOrUndefined(path: string): Stats | undefined {
  try {
    return lstatSync(path);
  } catch {
    return undefined;
  }
}
