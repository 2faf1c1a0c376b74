/**
 * Registry throughput: `kiln push` and `kiln pull` of a ~1 GiB image against `skopeo copy` of the
 * same image to and from the same kind of registry, in the same run, plus the bytes a re-push sends.
 * Run with `npx tsx bench/registry.ts` (not a test).
 *
 * Image: `kiln import` of a root filesystem tar holding one file of --size-mib MiB (default 1024), so
 * one layer. --data=urandom (the default) reads it from /dev/urandom: incompressible, so gzip saves
 * nothing and the upload is the full size. --data=mixed writes a quarter random bytes and three
 * quarters text-like bytes (as bench/layer.ts does), which gzip shrinks about 2:1, closer to what
 * real layers cost to compress.
 *
 * Registry: Debian's docker-registry (CNCF distribution), anonymous, on 127.0.0.1, filesystem
 * storage in a temp dir; each push goes to a registry started for it alone, so neither tool can
 * find the blobs already there or mount them from another repository.
 *
 * What is measured (each --runs times, default 3; medians reported):
 *
 * - first push: kiln's store keeps layers uncompressed; its first push gzips the layer (parallel
 *   gzip, level 6), writes the gzip blob to the store (it is remembered for later pushes) and
 *   uploads it. Each run starts from a copy of the freshly imported store, so each one compresses.
 *   skopeo copies the same image from the same store (`oci:<store>:<name>`, layers uncompressed);
 *   pushing to a registry it gzips too (pgzip, its default level) as it uploads, without keeping the
 *   result. Both compress and upload the whole layer; only kiln also writes the gzip blob to disk.
 * - push, already compressed: kiln pushes the same image again from that store to a fresh registry,
 *   the gzip blob already made; skopeo copies the gzip manifest kiln's push recorded in the store
 *   (`<repo>@<digest>`), so it uploads exactly the same blob and manifest without compressing.
 * - pull: into an empty store (`kiln --root <empty dir> pull`) against
 *   `skopeo copy docker://… oci:<empty dir>:x`; both keep the layer gzipped and verify its digest.
 * - re-push: the image again through a counting proxy to the registry that has it all. The bytes
 *   the client sent (request bodies) should be ~0 for kiln. skopeo re-pushes the gzip manifest for
 *   comparison (it PUTs the manifest again).
 *
 * Time is wall-clock seconds of the whole CLI process (Node's start-up included for kiln); CPU and
 * peak RSS come from `/usr/bin/time -f '%M %U %S'` around each kiln and skopeo process. kiln and
 * skopeo alternate within each run, so other load on the machine hits both; the CPU columns do not
 * depend on it.
 *
 * Options: --size-mib=N, --data=urandom|mixed, --runs=N, --dir=PATH (where to put the temp dir),
 * --keep (leave it).
 */
import { spawn, spawnSync } from 'node:child_process';
import { randomFillSync } from 'node:crypto';
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, readdirSync, rmSync, statSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { requireDebianPackage, startFaultProxy, startRegistry, type FaultProxy, type RegistryServer } from '../test/helpers/registry/index.js';

const REPO = join(dirname(fileURLToPath(import.meta.url)), '..');
const KILN_BIN = join(REPO, 'bin/kiln.js');
const TIME = '/usr/bin/time';
const IMAGE = 'bench/big:1';

function arg(name: string): string | undefined {
  return process.argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3);
}

interface Measured {
  seconds: number;
  cpuSeconds: number;
  rssMiB: number;
  stdout: string;
  stderr: string;
}

/**
 * Runs `argv` under /usr/bin/time without blocking this process (the counting proxy lives in it),
 * and fails with the program's own output when it fails.
 */
function timed(argv: string[], env: NodeJS.ProcessEnv, timeFile: string): Promise<Measured> {
  return new Promise((resolve, reject) => {
    const start = process.hrtime.bigint();
    const child = spawn(TIME, ['-f', '%M %U %S', '-o', timeFile, ...argv], { cwd: REPO, env, stdio: ['ignore', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    child.on('error', reject);
    child.on('close', (code) => {
      const seconds = Number(process.hrtime.bigint() - start) / 1e9;
      const stdout = Buffer.concat(out).toString('utf8');
      const stderr = Buffer.concat(err).toString('utf8');
      if (code !== 0) return reject(new Error(`${argv.join(' ')} exited ${code}:\n${stderr}${stdout}`));
      const [rssKiB, user, sys] = readFileSync(timeFile, 'utf8').trim().split('\n').pop()!.split(' ').map(Number);
      resolve({ seconds, cpuSeconds: user! + sys!, rssMiB: rssKiB! / 1024, stdout, stderr });
    });
  });
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** The CLI runs from dist/; rebuild it when any source file is newer. */
function ensureBuilt(): void {
  const main = join(REPO, 'dist/cli/main.js');
  const built = existsSync(main) ? statSync(main).mtimeMs : 0;
  const newest = (dir: string): number =>
    Math.max(0, ...readdirSync(dir, { withFileTypes: true }).map((e) => (e.isDirectory() ? newest(join(dir, e.name)) : statSync(join(dir, e.name)).mtimeMs)));
  if (newest(join(REPO, 'src')) <= built) return;
  console.error('dist/ is older than src/: running tsc');
  const r = spawnSync('npx', ['tsc', '-p', 'tsconfig.json'], { cwd: REPO, stdio: 'inherit' });
  // tsc still emits when it finds type errors; the run then shows whether the CLI works.
  if (r.status !== 0) console.error('tsc reported errors; measuring the CLI it emitted');
}

/**
 * `bytes` of a quarter random bytes and three quarters words from a small vocabulary, in 64 KiB
 * runs (gzip -6 shrinks it about 2:1).
 */
function writeMixed(path: string, bytes: number): void {
  const words = Array.from({ length: 4096 }, (_, i) => `w${(i * 2654435761) % 1000003}`.slice(0, 3 + (i % 9)));
  const pool = Buffer.from(Array.from({ length: 1 << 20 }, (_, i) => words[Math.floor(Math.random() * words.length)]! + (i % 13 ? ' ' : '\n')).join(''));
  const block = Buffer.alloc(4 << 20);
  const fd = openSync(path, 'w');
  try {
    for (let left = bytes; left > 0; left -= block.length) {
      const cut = block.length >> 2;
      randomFillSync(block, 0, cut);
      for (let off = cut; off < block.length; off += 64 << 10) {
        const start = Math.floor(Math.random() * (pool.length - (64 << 10)));
        pool.copy(block, off, start, start + Math.min(64 << 10, block.length - off));
      }
      writeSync(fd, block, 0, Math.min(left, block.length));
    }
  } finally {
    closeSync(fd);
  }
}

/** The name a store's index.json gives the manifest `digest` (the `oci:<store>:<name>` skopeo reads). */
function layoutName(root: string, match: (name: string, digest: string) => boolean): string {
  const index = JSON.parse(readFileSync(join(root, 'index.json'), 'utf8')) as { manifests: Array<{ digest: string; annotations?: Record<string, string> }> };
  for (const m of index.manifests) {
    const name = m.annotations?.['org.opencontainers.image.ref.name'];
    if (name && match(name, m.digest)) return name;
  }
  throw new Error(`no matching name in ${root}/index.json`);
}

/** `1: digest: sha256:… size: N`, the last line of kiln push. */
function pushedDigest(stdout: string): string {
  const m = /digest: (sha256:[a-f0-9]{64}) size: \d+\s*$/.exec(stdout);
  if (!m) throw new Error(`kiln push printed no digest line:\n${stdout}`);
  return m[1]!;
}

type Row = { kiln: Measured[]; skopeo: Measured[] };

async function main(): Promise<void> {
  const sizeMiB = Number(arg('size-mib') ?? 1024);
  const data = arg('data') ?? 'urandom';
  if (data !== 'urandom' && data !== 'mixed') throw new Error(`--data=${data}: use urandom or mixed`);
  const runs = Number(arg('runs') ?? 3);
  const keep = process.argv.includes('--keep');
  requireDebianPackage('skopeo', '/usr/bin/skopeo');
  requireDebianPackage('time', TIME);
  ensureBuilt();

  const base = arg('dir') ?? tmpdir();
  mkdirSync(base, { recursive: true });
  const work = mkdtempSync(join(base, 'kiln-bench-registry-'));
  const cleanupWork = (): void => {
    if (!keep) rmSync(work, { recursive: true, force: true });
  };
  // A stopped benchmark leaves nothing behind: registries go with the helpers' exit hook, the
  // work dir (several GiB) with this one.
  process.once('exit', cleanupWork);
  for (const sig of ['SIGINT', 'SIGTERM'] as const) process.once(sig, () => process.exit(130));
  console.error(`work dir ${work}`);

  // Nothing from this machine's logins: kiln's docker config and skopeo's auth file are private.
  const env: NodeJS.ProcessEnv = { ...process.env, DOCKER_CONFIG: join(work, 'docker'), REGISTRY_AUTH_FILE: join(work, 'auth.json') };
  delete env.KILN_ROOT;
  const timeFile = join(work, 'time.out');
  const kiln = (root: string, args: string[]): Promise<Measured> => timed([process.execPath, KILN_BIN, '--root', root, ...args], env, timeFile);
  const kilnQuiet = async (root: string, args: string[]): Promise<string> => (await kiln(root, args)).stdout;
  const skopeo = (args: string[]): Promise<Measured> => timed(['skopeo', ...args], env, timeFile);

  const registries = new Set<RegistryServer>();
  const fresh = async (): Promise<RegistryServer> => {
    const r = await startRegistry({ mode: 'none', logLevel: 'warn' });
    registries.add(r);
    return r;
  };
  const stop = async (r: RegistryServer): Promise<void> => {
    registries.delete(r);
    await r.stop();
  };
  let proxy: FaultProxy | undefined;

  try {
    // -- the image
    const pristine = join(work, 'pristine');
    const rootfs = join(work, 'rootfs');
    mkdirSync(join(rootfs, 'data'), { recursive: true });
    console.error(`making a ${sizeMiB} MiB file (${data}) and importing it`);
    if (data === 'mixed') writeMixed(join(rootfs, 'data/blob.bin'), sizeMiB * 1024 * 1024);
    const made = spawnSync(
      'bash',
      [
        '-c',
        'set -eo pipefail; if [ ! -e "$1/data/blob.bin" ]; then head -c "$2" /dev/urandom > "$1/data/blob.bin"; fi; ' +
          'tar -C "$1" --numeric-owner --owner=0 --group=0 --mtime=@0 -cf - . | "$3" "$4" --root "$5" import - "$6"',
        'make',
        rootfs,
        String(sizeMiB * 1024 * 1024),
        process.execPath,
        KILN_BIN,
        pristine,
        IMAGE,
      ],
      { env: { ...env, SOURCE_DATE_EPOCH: '0' }, encoding: 'utf8' },
    );
    if (made.status !== 0) throw new Error(`making the image failed: ${made.stderr}`);
    rmSync(rootfs, { recursive: true, force: true });
    const sourceName = layoutName(pristine, (n) => n.endsWith(IMAGE));

    const rows: Record<'first' | 'again' | 'pull' | 'repush', Row> = {
      first: { kiln: [], skopeo: [] },
      again: { kiln: [], skopeo: [] },
      pull: { kiln: [], skopeo: [] },
      repush: { kiln: [], skopeo: [] },
    };
    const log = (what: string, m: Measured): void =>
      console.error(`  ${what}: ${m.seconds.toFixed(2)} s (cpu ${m.cpuSeconds.toFixed(1)} s, rss ${m.rssMiB.toFixed(0)} MiB)`);

    // -- pushes, each to a registry of its own
    let kept: { root: string; digest: string; gzipName: string } | undefined;
    for (let i = 0; i < runs; i++) {
      console.error(`push run ${i + 1}/${runs}`);
      const root = join(work, `store-${i}`);
      const cp = spawnSync('cp', ['-a', pristine, root]);
      if (cp.status !== 0) throw new Error(`cp -a failed: ${cp.stderr}`);

      let reg = await fresh();
      await kilnQuiet(root, ['tag', IMAGE, `${reg.host}/${IMAGE}`]);
      const first = await kiln(root, ['push', `${reg.host}/${IMAGE}`]);
      const digest = pushedDigest(first.stdout);
      rows.first.kiln.push(first);
      log('kiln push (gzip + upload)', first);
      await stop(reg);

      // The gzip manifest the push recorded as `<repo>@<digest>`: what skopeo pushes below.
      const gzipName = layoutName(root, (n, d) => d === digest && n.includes('@'));

      reg = await fresh();
      const skopeoFirst = await skopeo(['copy', '--quiet', '--insecure-policy', '--dest-tls-verify=false', `oci:${pristine}:${sourceName}`, `docker://${reg.host}/${IMAGE}`]);
      rows.first.skopeo.push(skopeoFirst);
      log('skopeo copy from the uncompressed layout', skopeoFirst);
      await stop(reg);

      reg = await fresh();
      await kilnQuiet(root, ['tag', IMAGE, `${reg.host}/${IMAGE}`]);
      const again = await kiln(root, ['push', `${reg.host}/${IMAGE}`]);
      if (pushedDigest(again.stdout) !== digest) throw new Error('a second push gave another manifest digest');
      rows.again.kiln.push(again);
      log('kiln push (already compressed)', again);
      await stop(reg);

      reg = await fresh();
      const digestFile = join(work, 'skopeo.digest');
      const skopeoAgain = await skopeo([
        'copy',
        '--quiet',
        '--insecure-policy',
        '--dest-tls-verify=false',
        '--digestfile',
        digestFile,
        `oci:${root}:${gzipName}`,
        `docker://${reg.host}/${IMAGE}`,
      ]);
      const skopeoDigest = readFileSync(digestFile, 'utf8').trim();
      if (skopeoDigest !== digest) throw new Error(`skopeo pushed ${skopeoDigest}, kiln ${digest}: not the same upload`);
      rows.again.skopeo.push(skopeoAgain);
      log('skopeo copy from the gzip layout', skopeoAgain);
      await stop(reg);

      if (!kept) kept = { root, digest, gzipName };
      else rmSync(root, { recursive: true, force: true });
    }
    rmSync(pristine, { recursive: true, force: true });

    // -- pulls from one registry holding the image
    const { root, digest, gzipName } = kept!;
    const reg = await fresh();
    await kilnQuiet(root, ['tag', IMAGE, `${reg.host}/${IMAGE}`]);
    await kilnQuiet(root, ['push', `${reg.host}/${IMAGE}`]);
    for (let i = 0; i < runs; i++) {
      console.error(`pull run ${i + 1}/${runs}`);
      const into = join(work, `pull-kiln-${i}`);
      const pulled = await kiln(into, ['pull', `${reg.host}/${IMAGE}`]);
      if (!pulled.stdout.includes(`Digest: ${digest}`)) throw new Error(`kiln pull got another image:\n${pulled.stdout}`);
      rows.pull.kiln.push(pulled);
      log('kiln pull', pulled);
      rmSync(into, { recursive: true, force: true });

      const dest = join(work, `pull-skopeo-${i}`);
      const copied = await skopeo(['copy', '--quiet', '--insecure-policy', '--src-tls-verify=false', `docker://${reg.host}/${IMAGE}`, `oci:${dest}:x`]);
      rows.pull.skopeo.push(copied);
      log('skopeo copy to an OCI layout', copied);
      rmSync(dest, { recursive: true, force: true });
    }

    // -- re-push through a counting proxy to the registry that has everything
    proxy = await startFaultProxy(reg.url);
    await kilnQuiet(root, ['tag', IMAGE, `${proxy.host}/${IMAGE}`]);
    const sent = { kiln: [] as Array<{ bytes: number; requests: number }>, skopeo: [] as Array<{ bytes: number; requests: number }> };
    for (let i = 0; i < runs; i++) {
      console.error(`re-push run ${i + 1}/${runs}`);
      let before = { ...proxy.stats };
      const again = await kiln(root, ['push', `${proxy.host}/${IMAGE}`]);
      if (pushedDigest(again.stdout) !== digest) throw new Error('the re-push gave another manifest digest');
      sent.kiln.push({ bytes: proxy.stats.bytesToServer - before.bytesToServer, requests: proxy.stats.requests - before.requests });
      rows.repush.kiln.push(again);
      log(`kiln re-push (${sent.kiln.at(-1)!.bytes} bytes sent)`, again);

      before = { ...proxy.stats };
      const skopeoAgain = await skopeo(['copy', '--quiet', '--insecure-policy', '--dest-tls-verify=false', `oci:${root}:${gzipName}`, `docker://${proxy.host}/${IMAGE}`]);
      sent.skopeo.push({ bytes: proxy.stats.bytesToServer - before.bytesToServer, requests: proxy.stats.requests - before.requests });
      rows.repush.skopeo.push(skopeoAgain);
      log(`skopeo re-push (${sent.skopeo.at(-1)!.bytes} bytes sent)`, skopeoAgain);
    }

    // -- the table
    const label: Record<keyof typeof rows, string> = {
      first: 'push, first (gzip + upload)',
      again: 'push, layer already gzipped',
      pull: 'pull into an empty store',
      repush: 're-push, registry has it all',
    };
    const table: string[][] = [['measurement', 'kiln s', 'skopeo s', 'kiln/skopeo', 'kiln cpu s', 'skopeo cpu s', 'kiln RSS MiB', 'skopeo RSS MiB']];
    for (const key of Object.keys(rows) as Array<keyof typeof rows>) {
      const { kiln: k, skopeo: s } = rows[key];
      const kt = median(k.map((m) => m.seconds));
      const st = median(s.map((m) => m.seconds));
      table.push([
        label[key],
        kt.toFixed(2),
        st.toFixed(2),
        (kt / st).toFixed(2),
        median(k.map((m) => m.cpuSeconds)).toFixed(1),
        median(s.map((m) => m.cpuSeconds)).toFixed(1),
        Math.max(...k.map((m) => m.rssMiB)).toFixed(0),
        Math.max(...s.map((m) => m.rssMiB)).toFixed(0),
      ]);
    }
    const widths = table[0]!.map((_, c) => Math.max(...table.map((r) => r[c]!.length)));
    const manifest = JSON.parse(readFileSync(join(root, 'blobs', 'sha256', digest.slice(7)), 'utf8')) as { layers: Array<{ size: number }> };
    const gzipMB = manifest.layers.reduce((n, l) => n + l.size, 0) / 1e6;
    const what = data === 'urandom' ? 'bytes from /dev/urandom' : 'mixed random and text-like bytes';
    console.log(`\n${sizeMiB} MiB image (one layer: a file of ${what}), ${runs} runs each; median wall seconds; RSS is the peak over the runs`);
    console.log(`layer: ${((sizeMiB * 1024 * 1024) / 1e6).toFixed(0)} MB of file, ${gzipMB.toFixed(0)} MB as kiln's gzip blob`);
    for (const r of table) console.log(r.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!))).join('  '));
    const bytes = (xs: Array<{ bytes: number; requests: number }>): string =>
      `${median(xs.map((x) => x.bytes))} bytes in ${median(xs.map((x) => x.requests))} requests`;
    console.log(`re-push request bodies sent to the registry (median): kiln ${bytes(sent.kiln)}, skopeo ${bytes(sent.skopeo)}`);
    console.log('first push: kiln gzips the uncompressed stored layer, keeps the gzip blob in its store and uploads it;');
    console.log('  skopeo reads the same uncompressed layer from the same store (oci: layout) and gzips it while uploading.');
    console.log("push, already gzipped: both upload the identical gzip blob and manifest (same digest), neither compresses.");
    console.log('pull: both store the layer gzipped and verify its digest; kiln also names the image in its store.');
  } finally {
    await proxy?.stop();
    for (const r of [...registries]) await stop(r);
    cleanupWork();
  }
}

await main();
