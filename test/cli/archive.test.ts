/**
 * `kiln save` and `kiln load` against independent tools and bad input: skopeo reads what kiln
 * writes (and the store itself), kiln loads what skopeo writes, a round trip keeps every digest,
 * and damaged archives or a load killed half way leave the store as it was (after a prune).
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createWriteStream, promises as fsp, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { gzipSync } from 'node:zlib';
import { pack } from 'tar-stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sha256 } from '../../src/oci/digest.js';
import { REPO_ROOT } from '../conformance/harness.js';
import { BUSYBOX_IMAGE, busyboxStore, type BusyboxStore } from '../helpers/busybox.js';
import { KILN_BIN } from '../helpers/kiln.js';
import { entries, kilnAsync, kilnAt, kilnBinary, skopeo, spawnKiln, storeState, tempDir, type TempDir } from '../helpers/store.js';

interface Inspected {
  Id: string;
  RepoTags: string[];
  RootFS: { Layers: string[] };
  Descriptor: { digest: string; mediaType: string };
}

function inspect(root: string, ref: string): Inspected {
  const r = kilnAt(root, ['inspect', ref]);
  if (r.status !== 0) throw new Error(`kiln inspect ${ref}: ${r.stderr}`);
  return (JSON.parse(r.stdout) as Inspected[])[0]!;
}

let base: BusyboxStore;
let work: TempDir;
let source: Inspected;
let dockerTar: string;
let ociTar: string;

beforeAll(async () => {
  base = await busyboxStore();
  work = await tempDir('kiln-archive-');
  source = inspect(base.root, BUSYBOX_IMAGE);
  dockerTar = join(work.dir, 'busybox-docker.tar');
  ociTar = join(work.dir, 'busybox-oci.tar');
  // Every later test uses these two archives; `kiln save` itself is checked just below.
  for (const args of [['save', '-o', dockerTar, BUSYBOX_IMAGE], ['save', '--format', 'oci', '-o', ociTar, BUSYBOX_IMAGE]]) {
    const r = kilnAt(base.root, args);
    if (r.status !== 0 || r.stderr !== '') throw new Error(`kiln ${args.join(' ')} failed: ${r.stderr}`);
  }
});
afterAll(async () => {
  await base?.cleanup();
  await work?.cleanup();
});

/** A fresh empty store root inside the work dir. */
let stores = 0;
function newRoot(): string {
  return join(work.dir, `store-${++stores}`);
}

/** Asserts a failure printed exactly one line, `kiln: ...`. */
function expectOneLineError(r: { status: number | null; stderr: string }): void {
  expect(r.status).toBe(1);
  expect(r.stderr).toMatch(/^kiln: [^\n]+\n$/);
}

describe('kiln save', () => {
  it('writes a docker-archive that skopeo reads', () => {
    const info = JSON.parse(skopeo('inspect', `docker-archive:${dockerTar}`)) as { Layers: string[]; Os: string; Architecture: string };
    expect(info.Layers).toEqual(source.RootFS.Layers);
    expect(info.Os).toBe('linux');
    const raw = JSON.parse(skopeo('inspect', '--raw', `docker-archive:${dockerTar}`)) as { config: { digest: string } };
    expect(raw.config.digest).toBe(source.Id);
    const config = JSON.parse(skopeo('inspect', '--config', `docker-archive:${dockerTar}`)) as { history: Array<{ comment: string }> };
    expect(config.history[0]!.comment).toBe('Imported from -');
  });

  it('streams the same bytes to standard output', () => {
    const r = kilnBinary(base.root, ['save', BUSYBOX_IMAGE]);
    expect(r.status).toBe(0);
    expect(r.stdout.equals(readFileSync(dockerTar))).toBe(true);
  });

  it('skopeo reads `kiln save` through a pipe-fed file', async () => {
    const piped = join(work.dir, 'piped.tar');
    const r = spawnSync('sh', ['-c', `"${process.execPath}" "${KILN_BIN}" --root "${base.root}" save ${BUSYBOX_IMAGE} > "${piped}"`], { cwd: REPO_ROOT });
    expect(r.status).toBe(0);
    expect(JSON.parse(skopeo('inspect', `docker-archive:${piped}`)).Layers).toEqual(source.RootFS.Layers);
  });

  it('writes an OCI archive that skopeo reads under the tag, as docker save names it, with the same manifest digest', () => {
    const info = JSON.parse(skopeo('inspect', `oci-archive:${ociTar}:latest`)) as { Digest: string; Layers: string[] };
    expect(info.Digest).toBe(source.Descriptor.digest);
    expect(info.Layers).toEqual(source.RootFS.Layers);
  });

  it('--compression gzip compresses the layer in an OCI archive (same image ID)', () => {
    const gz = join(work.dir, 'gz-oci.tar');
    expect(kilnAt(base.root, ['save', '--format', 'oci', '--compression', 'gzip', '-o', gz, BUSYBOX_IMAGE]).status).toBe(0);
    const raw = JSON.parse(skopeo('inspect', '--raw', `oci-archive:${gz}:latest`)) as { config: { digest: string }; layers: Array<{ mediaType: string }> };
    expect(raw.config.digest).toBe(source.Id);
    expect(raw.layers[0]!.mediaType).toBe('application/vnd.oci.image.layer.v1.tar+gzip');
    expect(statSync(gz).size).toBeLessThan(statSync(ociTar).size);
  });

  it('refuses to write a tar to a terminal', () => {
    // `script` gives the command a pseudo-terminal as standard output.
    const r = spawnSync('script', ['-qec', `"${process.execPath}" "${KILN_BIN}" --root "${base.root}" save ${BUSYBOX_IMAGE}`, '/dev/null'], { encoding: 'utf8' });
    if ((r.error as NodeJS.ErrnoException | undefined)?.code === 'ENOENT') throw new Error('`script` (util-linux) is needed for this test');
    expect(r.status).toBe(1);
    expect(r.stdout.replace(/\r/g, '')).toBe('kiln: cowardly refusing to save to a terminal. Use the -o flag or redirect\n');
  });
});

describe('skopeo reads the store itself', () => {
  it('skopeo inspect oci:<root>:docker.io/kiln-test/busybox:latest', () => {
    const info = JSON.parse(skopeo('inspect', `oci:${base.root}:docker.io/kiln-test/busybox:latest`)) as { Digest: string; Layers: string[] };
    expect(info.Digest).toBe(source.Descriptor.digest);
    expect(info.Layers).toEqual(source.RootFS.Layers);
  });
});

describe('kiln load', () => {
  it('loads a docker-archive into an empty store, keeping every digest', () => {
    const root = newRoot();
    const r = kilnAt(root, ['load', '-i', dockerTar]);
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe('Loaded image: kiln-test/busybox:latest\n');
    const loaded = inspect(root, BUSYBOX_IMAGE);
    expect(loaded.Id).toBe(source.Id);
    expect(loaded.Descriptor).toEqual(source.Descriptor);
    expect(loaded.RootFS).toEqual(source.RootFS);
    expect(entries(join(root, 'tmp'))).toEqual([]);
    expect(entries(join(root, 'leases'))).toEqual([]);
  });

  it('loads an OCI archive from standard input, keeping every digest', () => {
    const root = newRoot();
    const r = kilnBinary(root, ['load'], { input: readFileSync(ociTar) });
    expect(r.stderr).toBe('');
    expect(r.stdout.toString()).toBe('Loaded image: kiln-test/busybox:latest\n');
    const loaded = inspect(root, BUSYBOX_IMAGE);
    expect(loaded.Id).toBe(source.Id);
    expect(loaded.Descriptor).toEqual(source.Descriptor);
    expect(entries(join(root, 'tmp'))).toEqual([]);
  });

  it('kiln save | kiln load moves an image between stores', () => {
    const root = newRoot();
    const kilnCmd = `"${process.execPath}" "${KILN_BIN}"`;
    const r = spawnSync('sh', ['-c', `${kilnCmd} --root "${base.root}" save ${BUSYBOX_IMAGE} | ${kilnCmd} --root "${root}" load -q`], { cwd: REPO_ROOT, encoding: 'utf8' });
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe('Loaded image: kiln-test/busybox:latest\n');
    expect(inspect(root, BUSYBOX_IMAGE).Descriptor).toEqual(source.Descriptor);
  });

  it('loads what skopeo copied into an OCI archive and a docker-archive', () => {
    const root = newRoot();
    const oci = join(work.dir, 'skopeo-oci.tar');
    const docker = join(work.dir, 'skopeo-docker.tar');
    skopeo('copy', '-q', `oci:${base.root}:docker.io/kiln-test/busybox:latest`, `oci-archive:${oci}:kiln-test/copied:1`);
    skopeo('copy', '-q', `oci:${base.root}:docker.io/kiln-test/busybox:latest`, `docker-archive:${docker}:kiln-test/dock:2`);
    expect(kilnAt(root, ['load', '-i', oci]).stdout).toBe('Loaded image: kiln-test/copied:1\n');
    expect(kilnAt(root, ['load', '-i', docker]).stdout).toBe('Loaded image: kiln-test/dock:2\n');
    expect(inspect(root, 'kiln-test/copied:1').Id).toBe(source.Id);
    expect(inspect(root, 'kiln-test/dock:2').Id).toBe(source.Id);
    expect(kilnAt(root, ['images', '--format', '{{.Repository}}:{{.Tag}} {{.ID}}']).stdout).toBe(
      // Same creation time: the one stored last comes first.
      `kiln-test/dock:2 ${source.Id.slice(7, 19)}\nkiln-test/copied:1 ${source.Id.slice(7, 19)}\n`,
    );
  });

  it('an image saved by ID loads without a name and is reported by ID', () => {
    const byId = join(work.dir, 'by-id.tar');
    expect(kilnAt(base.root, ['save', '-o', byId, source.Id.slice(7, 19)]).status).toBe(0);
    const root = newRoot();
    const r = kilnAt(root, ['load', '-i', byId]);
    expect(r.stdout).toBe(`Loaded image ID: ${source.Id}\n`);
    expect(kilnAt(root, ['images', '--format', '{{.Repository}}:{{.Tag}} {{.ID}}']).stdout).toBe(`<none>:<none> ${source.Id.slice(7, 19)}\n`);
  });
});

/** A gzip layer holding one file, and its diffID. */
async function gzipLayer(name: string, content: string): Promise<{ blob: Buffer; diffID: string }> {
  const layerTar = pack();
  layerTar.entry({ name, mtime: new Date(0), mode: 0o644 }, content);
  layerTar.finalize();
  const chunks: Buffer[] = [];
  for await (const c of layerTar) chunks.push(c as Buffer);
  const tar = Buffer.concat(chunks);
  return { blob: gzipSync(tar), diffID: sha256(tar) };
}

/**
 * An OCI archive of two images: a sound one, then one whose config claims a diffID its gzip layer
 * does not unpack to (the layer's own digest is right, so only unpacking it can tell).
 */
async function archiveWithWrongDiffID(path: string): Promise<void> {
  const blobs: Buffer[] = [];
  const manifests: unknown[] = [];
  for (const [name, lie] of [
    ['docker.io/kiln-test/honest:1', false],
    ['docker.io/kiln-test/liar:1', true],
  ] as const) {
    const layer = await gzipLayer(`${name.split('/')[2]}.txt`, `${name}\n`);
    const diffID = lie ? sha256('not the layer') : layer.diffID;
    const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [diffID] } }));
    const manifest = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: 'application/vnd.oci.image.manifest.v1+json',
        config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: sha256(config), size: config.length },
        layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: sha256(layer.blob), size: layer.blob.length }],
      }),
    );
    blobs.push(layer.blob, config, manifest);
    manifests.push({
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      digest: sha256(manifest),
      size: manifest.length,
      annotations: { 'org.opencontainers.image.ref.name': name },
    });
  }
  const out = pack();
  out.entry({ name: 'oci-layout' }, JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  out.entry({ name: 'index.json' }, JSON.stringify({ schemaVersion: 2, manifests }));
  for (const blob of blobs) out.entry({ name: `blobs/sha256/${sha256(blob).slice(7)}` }, blob);
  out.finalize();
  await pipeline(Readable.from(out), createWriteStream(path));
}

describe('kiln load refuses bad input and adds nothing', () => {
  let root: string;
  let before: Awaited<ReturnType<typeof storeState>>;
  let imagesBefore: string;

  beforeAll(async () => {
    root = newRoot();
    expect(kilnAt(root, ['load', '-i', dockerTar]).status).toBe(0);
    before = await storeState(root);
    imagesBefore = kilnAt(root, ['images']).stdout;
  });

  async function expectUnchanged(): Promise<void> {
    expect(await storeState(root)).toEqual(before);
    expect(kilnAt(root, ['images']).stdout).toBe(imagesBefore);
  }

  it('a truncated archive', async () => {
    const whole = readFileSync(dockerTar);
    for (const cut of [whole.length - 700, Math.floor(whole.length / 2), 3000]) {
      const path = join(work.dir, `truncated-${cut}.tar`);
      await fsp.writeFile(path, whole.subarray(0, cut));
      const r = kilnAt(root, ['load', '-i', path]);
      expectOneLineError(r);
      expect(r.stdout).toBe('');
      await expectUnchanged();
    }
  });

  it('a truncated archive on standard input', async () => {
    const whole = readFileSync(ociTar);
    const r = kilnBinary(root, ['load'], { input: whole.subarray(0, Math.floor(whole.length * 0.6)) });
    expectOneLineError(r);
    await expectUnchanged();
  });

  it('a corrupt layer', async () => {
    for (const [name, tar] of [
      ['docker', dockerTar],
      ['oci', ociTar],
    ] as const) {
      const bytes = Buffer.from(readFileSync(tar));
      // The middle of the archive is inside the busybox binary, in the layer.
      bytes.write('corrupt!', Math.floor(bytes.length / 2));
      const path = join(work.dir, `corrupt-${name}.tar`);
      await fsp.writeFile(path, bytes);
      const r = kilnAt(root, ['load', '-i', path]);
      expectOneLineError(r);
      // The message names the damaged layer (its wording is the archive reader's).
      expect(r.stderr).toContain(source.RootFS.Layers[0]!.slice(7));
      await expectUnchanged();
    }
  });

  it('a layer that does not unpack to the diffID its config promises (the image before it is not kept either)', async () => {
    const path = join(work.dir, 'wrong-diffid.tar');
    await archiveWithWrongDiffID(path);
    const r = kilnAt(root, ['load', '-i', path]);
    expectOneLineError(r);
    expect(r.stderr).toMatch(/diffID/);
    await expectUnchanged();
  });

  it('not an archive, an empty input, a missing file', async () => {
    const junk = join(work.dir, 'junk.tar');
    await fsp.writeFile(junk, randomBytes(10_000));
    const cases = [
      kilnAt(root, ['load', '-i', junk]),
      kilnBinary(root, ['load'], { input: Buffer.alloc(0) }),
      kilnAt(root, ['load', '-i', join(work.dir, 'no-such.tar')]),
    ];
    for (const r of cases) expectOneLineError(r);
    expect(cases[2]!.stderr).toBe(`kiln: ${join(work.dir, 'no-such.tar')}: no such file or directory\n`);
    await expectUnchanged();
  });
});

/** A rootfs tar holding `bytes` of random (incompressible) data, made with tar(1). */
async function bigRootfs(path: string, bytes: number): Promise<void> {
  const dir = join(work.dir, 'big-rootfs');
  await fsp.mkdir(dir, { recursive: true });
  const fh = await fsp.open(join(dir, 'big.bin'), 'w');
  try {
    for (let left = bytes; left > 0; left -= 1 << 20) await fh.write(randomBytes(Math.min(1 << 20, left)));
  } finally {
    await fh.close();
  }
  execFileSync('tar', ['-cf', path, '-C', dir, 'big.bin']);
  await fsp.rm(dir, { recursive: true });
}

describe('a load killed half way', () => {
  const BIG = 96 << 20;
  let bigArchive: string;

  beforeAll(async () => {
    const rootfs = join(work.dir, 'big-rootfs.tar');
    await bigRootfs(rootfs, BIG);
    const src = newRoot();
    expect(kilnAt(src, ['import', rootfs, 'kiln-test/big:1']).status).toBe(0);
    bigArchive = join(work.dir, 'big.tar');
    expect(kilnAt(src, ['save', '-o', bigArchive, 'kiln-test/big:1']).status).toBe(0);
    await fsp.rm(rootfs);
    await fsp.rm(src, { recursive: true });
  }, 300_000);

  /** A store holding only the busybox base, and what it looks like. */
  async function storeWithBase(): Promise<{ root: string; state: Awaited<ReturnType<typeof storeState>>; images: string }> {
    const root = newRoot();
    expect(kilnAt(root, ['load', '-i', dockerTar]).status).toBe(0);
    return { root, state: await storeState(root), images: kilnAt(root, ['images']).stdout };
  }

  async function expectRecovered(root: string, state: Awaited<ReturnType<typeof storeState>>, images: string): Promise<void> {
    const list = kilnAt(root, ['images']);
    expect(list.status).toBe(0);
    expect(list.stdout).toBe(images);
    const prune = kilnAt(root, ['prune', '-f']);
    expect(prune.stderr).toBe('');
    expect(prune.status).toBe(0);
    expect(prune.stdout).toMatch(/^Total reclaimed space: \d/);
    expect(await storeState(root)).toEqual(state);
    expect(entries(join(root, 'tmp'))).toEqual([]);
    expect(kilnAt(root, ['images']).stdout).toBe(images);
  }

  it('while writing blobs into the store: images still reads it, prune removes the debris', async () => {
    const { root, state, images } = await storeWithBase();
    const child = spawnKiln(root, ['load', '-i', bigArchive]);
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    let finished = false;
    void exited.then(() => (finished = true));
    // Kill as soon as a blob is being written into the store's temp dir.
    const tmp = join(root, 'tmp');
    let killedMidway = false;
    while (!finished) {
      const inFlight = entries(tmp).filter((n) => n.endsWith('.blob'));
      if (inFlight.some((n) => (statSync(join(tmp, n), { throwIfNoEntry: false })?.size ?? 0) > 0)) {
        child.kill('SIGKILL');
        killedMidway = true;
        break;
      }
      await new Promise((resolve) => setTimeout(resolve, 2));
    }
    await exited;
    expect(killedMidway, 'the load finished before it could be killed: make the archive bigger').toBe(true);
    // The dead load left its lease and temp files behind.
    expect(entries(join(root, 'leases')).length).toBeGreaterThan(0);
    expect(entries(tmp).length).toBeGreaterThan(0);
    await expectRecovered(root, state, images);
  }, 120_000);

  it('prunes running during a load leave what it has written (its lease pins it)', async () => {
    const { root } = await storeWithBase();
    const child = spawnKiln(root, ['load', '-i', bigArchive]);
    let stderr = '';
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    let done = false;
    void exited.then(() => (done = true));
    let prunes = 0;
    while (!done) {
      const p = await kilnAsync(root, ['prune', '-f']);
      expect(p.stderr).toBe('');
      expect(p.status).toBe(0);
      prunes++;
    }
    expect(await exited, stderr).toBe(0);
    expect(prunes).toBeGreaterThan(0);
    // Every blob is there and intact: saving reads (and verifies) all of them.
    const out = join(work.dir, 'big-again.tar');
    const save = kilnAt(root, ['save', '-o', out, 'kiln-test/big:1']);
    expect(save.stderr).toBe('');
    expect(save.status).toBe(0);
    expect(statSync(out).size).toBe(statSync(bigArchive).size);
    await fsp.rm(out);
  }, 120_000);

  it('while reading the archive from standard input', async () => {
    const { root, state, images } = await storeWithBase();
    const child = spawnKiln(root, ['load']);
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.stdin!.on('error', () => undefined);
    const bytes = readFileSync(bigArchive);
    await new Promise<void>((resolve) => child.stdin!.write(bytes.subarray(0, Math.floor(bytes.length / 2)), () => resolve()));
    // Wait until the half written so far has reached the store's temp dir, then kill.
    const tmp = join(root, 'tmp');
    for (let i = 0; i < 2000 && entries(tmp).length === 0; i++) await new Promise((resolve) => setTimeout(resolve, 5));
    expect(entries(tmp).length).toBeGreaterThan(0);
    child.kill('SIGKILL');
    await exited;
    await expectRecovered(root, state, images);
  }, 120_000);
});

describe('the busybox base image', () => {
  it('holds busybox, its applets, and the files around them', () => {
    const r = kilnBinary(base.root, ['save', BUSYBOX_IMAGE]);
    expect(r.status).toBe(0);
    // The docker-archive's one layer is the rootfs tar; list it with tar.
    const layer = readLayerFromArchive(r.stdout, source.RootFS.Layers[0]!);
    const listing = execFileSync('tar', ['-tvf', '-'], { input: layer, encoding: 'utf8' });
    expect(listing).toMatch(/^-rwxr-xr-x root\/root +\d+ 2024-01-01 00:00 bin\/busybox$/m);
    expect(listing).toMatch(/^lrwxrwxrwx root\/root +0 2024-01-01 00:00 bin\/sh -> \/bin\/busybox$/m);
    expect(listing).toMatch(/^drwxrwxrwt root\/root +0 2024-01-01 00:00 tmp\/$/m);
    expect(listing).toMatch(/^drwx------ root\/root +0 2024-01-01 00:00 root\/$/m);
    for (const dir of ['proc/', 'dev/', 'sys/', 'etc/']) expect(listing).toContain(` ${dir}\n`);
    const passwd = execFileSync('tar', ['-xOf', '-', 'etc/passwd'], { input: layer, encoding: 'utf8' });
    expect(passwd).toMatch(/^root:x:0:0:/m);
    expect(passwd).toMatch(/^nobody:x:65534:65534:/m);
    const group = execFileSync('tar', ['-xOf', '-', 'etc/group'], { input: layer, encoding: 'utf8' });
    expect(group).toBe('root:x:0:\nnobody:x:65534:\n');
  });
});

/** A blob of a docker-archive (kiln's layout: `blobs/sha256/<hex>`), read with tar. */
function readLayerFromArchive(archive: Buffer, digest: string): Buffer {
  return execFileSync('tar', ['-xOf', '-', `blobs/sha256/${digest.slice(7)}`], { input: archive, maxBuffer: 1 << 28 });
}
