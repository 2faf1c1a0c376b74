/** `kiln build`: reads the Dockerfile, runs the engine, writes the outputs, reports like buildx. */
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { dirname, resolve } from 'node:path';
import { finished } from 'node:stream/promises';
import { UsageError } from '../errors.js';
import { BuildEngine, type BuildRequest } from '../build/engine.js';
import { Progress, type Vertex } from '../build/events.js';
import type { ExportProgress } from '../build/export-progress.js';
import type { Digest } from '../oci/digest.js';
import type { Descriptor } from '../oci/types.js';
import { stateImage } from '../build/image.js';
import { resolveOutputs, type OutputSpec } from '../build/outputs.js';
import { normalizeName } from '../oci/reference.js';
import { parsePlatform } from '../oci/platform.js';
import { type Lease, type Store } from '../store/index.js';
import { BuildOutput } from '../ui/build-output.js';
import { readDockerfile } from './check.js';
import { openStoreForCommand } from './store.js';
import type { BuildCommandOptions } from './commands/build.js';
import type { SecretSource } from '../sandbox/index.js';

function parseSecrets(specs: readonly string[]): Record<string, SecretSource> {
  const out: Record<string, SecretSource> = {};
  for (const spec of specs) {
    const f: Record<string, string> = {};
    for (const part of spec.split(',')) {
      const eq = part.indexOf('=');
      if (eq < 0) throw new UsageError(`invalid --secret "${spec}": "${part}" is not KEY=VALUE`);
      f[part.slice(0, eq)] = part.slice(eq + 1);
    }
    const id = f.id;
    if (!id) throw new UsageError(`invalid --secret "${spec}": id= is required`);
    const src = f.src ?? f.source;
    if (src) out[id] = { file: resolve(src) };
    else if (f.env) out[id] = { env: f.env };
    else if (process.env[id] !== undefined) out[id] = { env: id };
    else throw new UsageError(`invalid --secret "${spec}": give src=FILE or env=VAR`);
  }
  return out;
}

function parseSize(value: string | undefined, flag: string): number | undefined {
  if (value === undefined) return undefined;
  const m = /^(\d+)([bkmg])?$/i.exec(value.trim());
  if (!m) throw new UsageError(`invalid value "${value}" for ${flag}: expected a size like 512m`);
  const unit = { b: 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 }[(m[2] ?? 'b').toLowerCase() as 'b' | 'k' | 'm' | 'g'];
  return Number(m[1]) * unit;
}

function parseInteger(value: string | undefined, flag: string): number | undefined {
  if (value === undefined) return undefined;
  if (!/^\d+$/.test(value)) throw new UsageError(`invalid value "${value}" for ${flag}: expected a whole number`);
  return Number(value);
}

function sourceDateEpoch(buildArgs: Record<string, string>): number | undefined {
  const raw = buildArgs.SOURCE_DATE_EPOCH ?? process.env.SOURCE_DATE_EPOCH;
  if (raw === undefined || raw === '') return undefined;
  if (!/^\d+$/.test(raw)) throw new UsageError(`invalid SOURCE_DATE_EPOCH "${raw}": expected seconds since 1970`);
  return Number(raw);
}

/** Writes a file atomically: a reader never sees half an archive. */
async function writeAtomically(dest: string, write: (out: NodeJS.WritableStream) => Promise<void>): Promise<void> {
  if (dest === '-') {
    await write(process.stdout);
    return;
  }
  const path = resolve(dest);
  await mkdir(dirname(path), { recursive: true });
  const tmp = `${path}.kiln-${process.pid}.tmp`;
  const out = createWriteStream(tmp);
  try {
    await write(out);
    if (!out.writableFinished) await finished(out);
    await rename(tmp, path);
  } catch (err) {
    out.destroy();
    await rm(tmp, { force: true });
    throw err;
  }
}

export async function runBuild(context: string, options: BuildCommandOptions, root: string): Promise<number> {
  const source = await readDockerfile(context, options.file);
  const tags = options.tag.map((t) => normalizeName(t));
  const outputs: OutputSpec[] = resolveOutputs(options.output, tags, Boolean(options.push));
  const buildArgs = options.buildArg;
  const epoch = sourceDateEpoch(buildArgs);
  const network = options.network;
  if (network !== undefined && !['default', 'none', 'host'].includes(network)) {
    throw new UsageError(`invalid --network "${network}": expected default, none or host`);
  }
  const memory = parseSize(options.memory, '--memory');
  const cpuQuota = parseInteger(options.cpuQuota, '--cpu-quota');
  const pidsLimit = parseInteger(options.pidsLimit, '--pids-limit');
  const jobs = parseInteger(options.jobs, '--jobs');
  const cacheSpecs = options.cacheTo.length || options.cacheFrom.length ? await import('../cache/spec.js') : undefined;
  const cacheTo = cacheSpecs ? options.cacheTo.map(cacheSpecs.parseCacheTo) : [];
  const cacheFrom = cacheSpecs ? options.cacheFrom.map(cacheSpecs.parseCacheFrom) : [];
  const abort = new AbortController();
  const onSignal = (): void => abort.abort();
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);

  const onFailure = options.onFailure ?? 'fail';
  if (onFailure !== 'fail' && onFailure !== 'shell') throw new UsageError(`invalid --on-failure "${onFailure}": expected fail or shell`);
  const store = await openStoreForCommand(root, { namespace: true });
  const output = await BuildOutput.start({
    progress: options.progress,
    quiet: Boolean(options.quiet),
    explain: Boolean(options.explain),
    storeRoot: store.root,
    contextDir: context,
    dockerfile: options.file ?? resolve(context, 'Dockerfile'),
    target: options.target,
    tags,
  });
  const progress = new Progress(output.sink);
  const request: BuildRequest = {
    contextDir: context,
    dockerfile: { ...source, ...(options.file && options.file !== '-' ? { path: options.file } : options.file === '-' ? { path: '-' } : {}) },
    buildArgs,
    ...(options.target ? { target: options.target } : {}),
    ...(options.platform ? { platform: parsePlatform(options.platform) } : {}),
    noCache: options.cache === false || Boolean(options.noCache),
    noCacheFilter: options.cacheFilter ?? [],
    pull: Boolean(options.pull),
    secrets: parseSecrets(options.secret),
    ...(network ? { network: network as 'default' | 'none' | 'host' } : {}),
    ...(epoch !== undefined ? { sourceDateEpoch: epoch } : {}),
    ...(jobs !== undefined ? { jobs } : { jobs: Math.max(1, availableParallelism()) }),
    ...(memory !== undefined || cpuQuota !== undefined || pidsLimit !== undefined
      ? { limits: { ...(memory !== undefined ? { memory } : {}), ...(cpuQuota !== undefined ? { cpuQuota } : {}), ...(pidsLimit !== undefined ? { pidsLimit } : {}) } }
      : {}),
    signal: abort.signal,
    ...(cacheTo.length ? { cacheTo } : {}),
    ...(cacheFrom.length ? { cacheFrom } : {}),
    ...(options.insecureRegistry.length ? { insecureRegistries: options.insecureRegistry } : {}),
    ...(onFailure === 'shell' ? { onFailure: 'shell' as const } : {}),
  };
  let engine: BuildEngine;
  try {
    engine = await BuildEngine.create(store, request, progress);
  } catch (err) {
    await output.failed(undefined, err);
    throw err;
  }
  await output.attach(engine);
  try {
    const outcome = await engine.run();
    const created = epoch !== undefined ? new Date(epoch * 1000).toISOString().replace('.000Z', 'Z') : undefined;
    const exportVertex = progress.start('exporting to image');
    const stored = await stateImage(store, outcome.state, {
      lease: engine.lease,
      labels: options.label,
      ...(created ? { created } : {}),
      ...(outcome.inlineCache ? { configFields: { 'kiln.cache.v0': outcome.inlineCache } } : {}),
    });
    const written = await writeOutputs(store, stored.image, outputs, options, exportVertex, engine.lease);
    exportVertex.done();
    const imageID = stored.configDigest;
    if (options.iidfile) await writeFile(options.iidfile, imageID);
    if (options.metadataFile) {
      const names = [...new Set(outputs.flatMap((o) => ('names' in o ? o.names : [])))];
      // The manifest the user got: the pushed or exported one (layers compressed), else the store's.
      const manifest = written.pushed ?? written.exported ?? { mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: stored.digest, size: stored.size };
      const meta: Record<string, unknown> = {
        'containerimage.config.digest': stored.configDigest,
        'containerimage.digest': manifest.digest,
        'containerimage.descriptor': manifest,
        ...(names.length ? { 'image.name': names.join(',') } : {}),
      };
      await writeFile(options.metadataFile, `${JSON.stringify(meta, null, 2)}\n`);
    }
    const layers = outcome.state.layers;
    await output.succeeded(engine, { id: imageID, digest: stored.digest, size: layers.reduce((n, l) => n + l.desc.size, 0), layers: layers.length }, stored.digest);
    if (options.quiet) process.stdout.write(`${imageID}\n`);
    // A json stream stays one event per line: its build-done event carries the image.
    else if (output.kind !== 'json' && output.kind !== 'rawjson') process.stderr.write(`${outcome.cached}/${outcome.steps} steps cached; image ${imageID}\n`);
    return 0;
  } catch (err) {
    await output.failed(engine, err);
    throw err;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    await engine.release();
  }
}

interface ManifestDescriptor {
  mediaType: string;
  digest: string;
  size: number;
}

/**
 * Writes every requested output, with byte progress on `vertex` (layers compressed, layers
 * written, blobs pushed); answers the manifests it pushed or exported, when it did.
 */
async function writeOutputs(
  store: Store,
  image: Awaited<ReturnType<typeof stateImage>>['image'],
  outputs: OutputSpec[],
  options: BuildCommandOptions,
  vertex: Vertex,
  lease: Lease,
): Promise<{ pushed?: ManifestDescriptor; exported?: ManifestDescriptor }> {
  let pushed: ManifestDescriptor | undefined;
  let exported: ManifestDescriptor | undefined;
  const log = (line: string): void => vertex.log('stdout', Buffer.from(`${line}\n`));
  // Loaded by the outputs that write or send bytes: a build into the local store does without it.
  const progress = (): Promise<typeof import('../build/export-progress.js')> => import('../build/export-progress.js');
  // Layers are compressed once for every export and push that needs them, the first time one does.
  let gzip: Promise<Map<Digest, Descriptor>> | undefined;
  const compressed = (): Promise<Map<Digest, Descriptor>> => (gzip ??= progress().then((p) => p.compressLayers(store, image, lease, vertex)));
  const push = async (names: string[]): Promise<void> => {
    const { pushImage } = await import('../registry/index.js');
    const { observeUploads } = await import('../registry/blobs.js');
    await compressed();
    for (const name of names) {
      const shown = (await progress()).pushProgress(vertex, name);
      const r = await observeUploads(shown.onUpload, () =>
        pushImage(image, name, { store, lease, insecureRegistries: options.insecureRegistry, onEvent: (e) => shown.onBlob(e) }),
      );
      shown.finish();
      log(`pushed ${name}: digest: ${r.digest}`);
      pushed = { mediaType: r.mediaType, digest: r.digest, size: r.size };
    }
  };
  /** Runs one export with its `writing DEST` meter. */
  const exporting = async (form: 'oci' | 'docker' | 'rootfs', dest: string, write: (p: ExportProgress) => Promise<void>): Promise<void> => {
    const p = await (await progress()).exportProgress(store, image, form, form === 'oci' ? await compressed() : new Map(), lease, vertex, dest === '-' ? 'standard output' : dest);
    await write(p);
    p.finish();
  };
  for (const out of outputs) {
    switch (out.type) {
      case 'image':
        await store.putImage(image, { names: out.names });
        for (const n of out.names) log(`naming to ${n}`);
        if (out.push) await push(out.names);
        break;
      case 'registry':
        await push(out.names);
        break;
      case 'oci': {
        const formats = await import('../oci/formats/index.js');
        if (!out.dest) throw new UsageError('--output type=oci needs dest=PATH (or dest=- for standard output)');
        const dest = out.dest;
        await exporting('oci', dest, async (p) => {
          const named = [{ image: p.image, names: out.names }];
          if (!out.tar) await formats.writeOciLayoutDir(named, resolve(dest), { layerVariant: p.layerVariant });
          else await writeAtomically(dest, (s) => formats.writeOciArchive(named, s as NodeJS.WritableStream & import('node:stream').Writable, { layerVariant: p.layerVariant }));
        });
        log(`exported OCI ${out.tar ? 'archive' : 'layout'} to ${dest}`);
        if (dest !== '-') exported ??= await exportedManifest(resolve(dest), out.tar, out.names);
        break;
      }
      case 'docker': {
        if (!out.dest) {
          await store.putImage(image, { names: out.names });
          break;
        }
        const formats = await import('../oci/formats/index.js');
        const dest = out.dest;
        await exporting('docker', dest, (p) =>
          writeAtomically(dest, (s) => formats.writeDockerArchive([{ image: p.image, names: out.names }], s as import('node:stream').Writable, { layerVariant: p.layerVariant })),
        );
        log(`exported docker archive to ${dest}`);
        break;
      }
      case 'local': {
        const formats = await import('../oci/formats/index.js');
        const dest = out.dest;
        await mkdir(resolve(dest), { recursive: true });
        await exporting('rootfs', dest, (p) => formats.exportRootfs(p.image, { dir: resolve(dest) }));
        log(`exported filesystem to ${dest}`);
        break;
      }
      case 'tar': {
        const formats = await import('../oci/formats/index.js');
        const dest = out.dest;
        await exporting('rootfs', dest, (p) => writeAtomically(dest, (s) => formats.exportRootfs(p.image, { tar: s as import('node:stream').Writable })));
        break;
      }
    }
  }
  return { ...(pushed ? { pushed } : {}), ...(exported ? { exported } : {}) };
}

/**
 * The index.json entry an OCI export wrote for the image (its layers are compressed there, so its
 * manifest is not the store's): the one under the first name, else the last one.
 */
async function exportedManifest(dest: string, tar: boolean, names: string[]): Promise<ManifestDescriptor | undefined> {
  let raw: string | undefined;
  if (!tar) raw = await readFile(resolve(dest, 'index.json'), 'utf8');
  else {
    const { extract } = await import('tar-stream');
    const ex = extract();
    const done = new Promise<void>((resolveDone, reject) => {
      ex.on('entry', (h, body, next) => {
        const chunks: Buffer[] = [];
        body.on('data', (c: unknown) => {
          if (h.name.replace(/^\.\//, '') === 'index.json') chunks.push(c as Buffer);
        });
        body.on('end', () => {
          if (chunks.length) raw = Buffer.concat(chunks).toString('utf8');
          next();
        });
      });
      ex.on('finish', resolveDone);
      ex.on('error', reject);
    });
    createReadStream(dest).on('error', (e) => ex.destroy(e)).pipe(ex);
    await done;
  }
  if (raw === undefined) return undefined;
  const manifests = (JSON.parse(raw) as { manifests?: Array<ManifestDescriptor & { annotations?: Record<string, string> }> }).manifests ?? [];
  const first = names[0] ? normalizeName(names[0]) : undefined;
  const entry = manifests.find((m) => first && m.annotations?.['io.containerd.image.name'] === first) ?? manifests[manifests.length - 1];
  return entry ? { mediaType: entry.mediaType, digest: entry.digest, size: entry.size } : undefined;
}

