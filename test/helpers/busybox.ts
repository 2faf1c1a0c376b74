/**
 * The busybox test base image. Tests that build or run need a base image without a registry; they
 * get a store holding `kiln-test/busybox:latest`, made from Debian's busybox-static the way a user
 * would make it: `kiln import busybox.tar kiln-test/busybox`.
 *
 *   const base = await busyboxStore();      // a fresh temp store with the image
 *   kiln(['--root', base.root, 'images']);
 *   await base.cleanup();
 *
 * The rootfs tar is built once per busybox binary and kept in the system temp dir (written
 * atomically, so parallel test workers share it). The import runs with a fixed SOURCE_DATE_EPOCH,
 * so the image ID is the same in every store on one machine.
 */
import { promises as fsp, createWriteStream } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { ROOTFS_EPOCH, busyboxDigest, ensureBusybox, rootfsTar } from '../../fixtures/busybox/make-rootfs.js';
import { kiln } from './kiln.js';

export const BUSYBOX_IMAGE = 'kiln-test/busybox:latest';
/** Bump when make-rootfs.ts changes what it writes, so cached tars are not reused. */
const ROOTFS_VERSION = 1;

/** Path of the busybox rootfs tar (built on first use). */
export async function busyboxTar(): Promise<string> {
  const busybox = ensureBusybox();
  const dir = join(tmpdir(), 'kiln-test-busybox');
  await fsp.mkdir(dir, { recursive: true });
  const path = join(dir, `rootfs-v${ROOTFS_VERSION}-${busyboxDigest(busybox).slice(0, 16)}.tar`);
  try {
    await fsp.access(path);
    return path;
  } catch {
    // not built yet
  }
  const tmp = `${path}.${process.pid}.${Date.now()}.tmp`;
  try {
    await pipeline(rootfsTar(busybox), createWriteStream(tmp));
    await fsp.rename(tmp, path);
  } finally {
    await fsp.rm(tmp, { force: true });
  }
  return path;
}

/** Environment for the import: the fixed creation time that makes the image ID reproducible. */
export function busyboxImportEnv(): NodeJS.ProcessEnv {
  return { ...process.env, SOURCE_DATE_EPOCH: String(ROOTFS_EPOCH) };
}

/**
 * Imports the busybox rootfs into the store at `root` as `name` (default kiln-test/busybox:latest)
 * with the CLI; returns the image ID.
 */
export async function loadBusybox(root: string, name = BUSYBOX_IMAGE): Promise<string> {
  const tar = await busyboxTar();
  const r = kiln(['--root', root, 'import', tar, name], { env: busyboxImportEnv() });
  if (r.status !== 0) throw new Error(`kiln import of the busybox base failed (${r.status}): ${r.stderr.trim()}`);
  const id = r.stdout.trim();
  if (!/^sha256:[a-f0-9]{64}$/.test(id)) throw new Error(`kiln import printed "${id}", not an image ID`);
  return id;
}

export interface BusyboxStore {
  /** Temp directory holding the store (and free for the test's own files). */
  dir: string;
  /** The store root, for `--root`. */
  root: string;
  image: string;
  /** The image ID (config digest). */
  id: string;
  cleanup(): Promise<void>;
}

/** A fresh store in a temp directory, holding the busybox base image. */
export async function busyboxStore(): Promise<BusyboxStore> {
  const dir = await fsp.mkdtemp(join(tmpdir(), 'kiln-busybox-'));
  const root = join(dir, 'store');
  try {
    const id = await loadBusybox(root);
    return { dir, root, image: BUSYBOX_IMAGE, id, cleanup: () => fsp.rm(dir, { recursive: true, force: true }) };
  } catch (err) {
    await fsp.rm(dir, { recursive: true, force: true });
    throw err;
  }
}
