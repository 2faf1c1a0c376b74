/**
 * The steps that change a stage's filesystem — RUN (in the sandbox), COPY/ADD (the copier, no
 * mounts), WORKDIR's directory — each keyed, looked up in the build cache, and executed only on a
 * miss. Their layers are stored uncompressed; compression waits until an image leaves the store.
 */
import { chmod, cp, lstat, mkdir, readlink, rm, writeFile } from 'node:fs/promises';
import { join, posix } from 'node:path';
import { DockerfileError, KilnError, type SourceLocation } from '../errors.js';
import type {
  AddInstruction,
  CopyInstruction,
  ExpandedRunInstruction,
  Mount,
  PlannedStage,
} from '../dockerfile/instructions/index.js';
import type { Digest } from '../oci/digest.js';
import { sha256 } from '../oci/digest.js';
import type { Image } from '../oci/image.js';
import type { Platform } from '../oci/types.js';
import { formatPlatform, hostPlatform, platformMatches } from '../oci/platform.js';
import type { TarEntrySpec } from '../oci/layer/index.js';
import { ImageNotFoundError, type BuildCacheRecord } from '../store/index.js';
import type { BuildContext } from '../context/index.js';
import type { ReadOnlyFS } from './fsview/index.js';
import type { Download } from './copy/http.js';
import type { CopyContentKey, CopyKey, MkdirKey, RunKey } from './cache-key.js';
import type { BuildEngine } from './engine.js';
import type { ByteMeter, Vertex } from './events.js';
import { chompHeredocContent, parseHeredocWord } from '../dockerfile/instructions/heredoc.js';
import { copyCreatedBy, runArgs, runCommandString } from './image-config.js';
import type { LayerRef, StageState } from './state.js';

export interface StepResult {
  /** The filesystem key after the step. */
  key: Digest | undefined;
  layer?: LayerRef;
  empty: boolean;
  cached: boolean;
  historyText?: string;
  /** When the step's layer was first made (its history time): a cached step keeps the original. */
  created?: string;
  /** The key the step was looked up by, when `key` is another one (a COPY --from=STAGE's content key). */
  lookupKey?: Digest;
}

interface StepRecord extends BuildCacheRecord {
  key: unknown;
  layer?: LayerRef;
  empty: boolean;
  step: string;
  /** RFC 3339 time the step ran, so a cached rebuild gives the image the same history times. */
  created?: string;
  /** The key the steps after this one build on, when not the record's own (see CopyContentKey). */
  resultKey?: Digest;
}

const REMOTE_SOURCE = /^(https?:\/\/|git@|git:\/\/)/;

/** ADD's downloads made to key the step (see StepExecutors.remoteSources). */
interface RemoteDownloads {
  files: Map<string, Download>;
  /** Git sources keyed by the commit their remote named: the clone must be that commit. */
  commits: Map<string, string>;
  /** Git sources whose remote could not name a commit: keyed by the layer, once cloned. */
  unresolved: string[];
  dispose(): Promise<void>;
}

/** The host name of a RUN step's sandbox, as BuildKit names its own. */
const RUN_HOSTNAME = 'buildkitsandbox';

export class StepExecutors {
  private contextPromise: Promise<BuildContext> | undefined;
  private readonly lowers = new Map<Digest, Promise<{ lowerdirs: string[]; absolute: string[] }>>();
  private readonly exported = new Map<Digest, Promise<string>>();
  private scratchDirs: string[] = [];
  private readonly inflight = new Map<Digest, Promise<StepResult>>();
  /** The record of every step this build has found or made, by key (what a cache export sends). */
  private readonly records = new Map<Digest, StepRecord>();
  private empty: Promise<LayerRef> | undefined;
  private shellOpened = false;
  /** Steps waiting on context checksums, told of every file whose content is read. */
  private readonly contextReaders = new Set<() => void>();

  constructor(private readonly engine: BuildEngine) {}

  private get store() {
    return this.engine.store;
  }

  /** A base image from the store, else (or with --pull) from its registry. */
  async baseImage(name: string, vertex: Vertex, platform: Platform): Promise<Image> {
    const store = this.store;
    if (!this.engine.request.pull) {
      try {
        return await store.resolve(name, { platform });
      } catch (err) {
        if (!(err instanceof ImageNotFoundError)) throw err;
      }
    }
    const { pullImage } = await import('../registry/index.js');
    // One count for the whole image: blobs done, plus the bytes of those still arriving.
    const pulled = { done: 0, total: 0, receiving: new Map<string, number>() };
    let meter: ByteMeter | undefined;
    const update = (): void => {
      let current = pulled.done;
      for (const n of pulled.receiving.values()) current += n;
      meter ??= vertex.meter('pulling', pulled.total);
      meter.setTotal(pulled.total);
      meter.set(current);
    };
    const result = await pullImage(name, store, {
      platform,
      lease: this.engine.lease,
      onEvent: (e) => {
        if (e.type === 'resolved') vertex.log('stdout', Buffer.from(`resolved ${name} to ${e.digest}\n`));
        if (e.type === 'blob') {
          if (e.status === 'downloading' || e.status === 'exists') pulled.total += e.size;
          if (e.status === 'done' || e.status === 'exists') {
            pulled.receiving.delete(e.digest);
            pulled.done += e.size;
          }
          update();
        }
      },
      onBytes: (blob, received) => {
        pulled.receiving.set(blob.digest, received);
        update();
      },
    });
    meter?.finish();
    return result.image;
  }

  /** The build context, opened on first use (a build without COPY never walks it). */
  context(): Promise<BuildContext> {
    this.contextPromise ??= import('../context/index.js').then(({ openContext }) =>
      openContext(this.engine.request.contextDir, {
        dockerfilePath: this.engine.request.dockerfile.path ?? '-',
        cacheDir: this.store.cacheDir,
        onContentRead: () => {
          for (const counter of this.contextReaders) counter();
        },
      }),
    );
    return this.contextPromise;
  }

  /** Overlay lowerdirs (and absolute snapshot paths) of a state's layers, unpacked once. */
  lower(state: StageState): Promise<{ lowerdirs: string[]; absolute: string[] }> {
    let p = this.lowers.get(state.fsKey);
    if (!p) {
      const diffIDs = state.layers.map((l) => l.diffID);
      // Layers of steps cached in an imported cache are fetched now that their content is needed.
      const layers = [...state.layers];
      p = Promise.resolve(this.engine.cacheImport?.materialize(layers))
        .then(() => import('../sandbox/index.js'))
        .then(({ lowerDirsFor }) => lowerDirsFor(this.store, diffIDs, { lease: this.engine.lease }));
      this.lowers.set(state.fsKey, p);
    }
    return p;
  }

  /** A read-only view of a state's rootfs (for COPY destinations, --from sources, user lookups). */
  async view(state: StageState, label: string): Promise<ReadOnlyFS | undefined> {
    if (state.layers.length === 0) return undefined;
    const { LayeredFS } = await import('./fsview/index.js');
    const lower = await this.lower(state);
    return new LayeredFS(lower.absolute, { label });
  }

  private async cached(key: Digest, planned: PlannedStage): Promise<StepRecord | undefined> {
    if (!this.engine.cacheAllowed(planned)) return undefined;
    const rec = await this.store.buildCache.get<StepRecord>(key);
    if (!rec) return this.importedHit(key);
    // The lease holds the layer before it is checked, so a concurrent prune cannot remove it between
    // the check and its use; the record itself is left as written (a cached step writes nothing).
    await this.engine.lease.add(...rec.pins);
    // A record whose layer was pruned is a miss (unless an imported cache has the step).
    if (rec.layer && !(await this.store.hasBlob(rec.layer.desc.digest))) return this.importedHit(key);
    this.records.set(key, rec);
    return rec;
  }

  /**
   * A step found in a `--cache-from` cache. Its layer stays remote until something reads it (see
   * `lower`); the record is kept in the store so the next build finds it there too.
   */
  private async importedHit(key: Digest): Promise<StepRecord | undefined> {
    const imported = this.engine.cacheImport?.lookup(key);
    if (!imported) return undefined;
    const rec: StepRecord = {
      key: imported.key,
      step: imported.step,
      empty: imported.empty,
      layer: imported.layer,
      pins: imported.pins,
      lastUsed: imported.lastUsed,
      ...(imported.resultKey ? { resultKey: imported.resultKey } : {}),
    };
    await this.store.buildCache.put(key, rec);
    this.records.set(key, rec);
    return rec;
  }

  /** The record of a step this build found or made. */
  stepRecord(key: Digest): StepRecord | undefined {
    return this.records.get(key);
  }

  /** Records a step that ran; returns the time it ran (the history time of its layer). */
  private async remember(
    key: Digest,
    record: unknown,
    step: string,
    layer: LayerRef | undefined,
    empty: boolean,
    extra: { created?: string; resultKey?: Digest } = {},
  ): Promise<string> {
    const pins = layer ? [layer.desc.digest, layer.diffID] : [];
    const now = new Date().toISOString();
    const created = extra.created ?? now;
    const rec: StepRecord = { key: record, step, empty, pins, lastUsed: now, created, ...(layer ? { layer } : {}), ...(extra.resultKey ? { resultKey: extra.resultKey } : {}) };
    await this.store.buildCache.put(key, rec);
    this.records.set(key, rec);
    return created;
  }

  // ------------------------------------------------------------------ RUN

  async run(state: StageState, ins: ExpandedRunInstruction, vertex: Vertex, planned: PlannedStage, at: SourceLocation): Promise<StepResult> {
    const engine = this.engine;
    const { args, script } = runCommand(state, ins, at);
    const host = hostPlatform();
    if (!platformMatches(host, state.platform)) {
      throw new DockerfileError(`cannot run a ${formatPlatform(state.platform)} step on this ${formatPlatform(host)} machine`, at, {
        hint: 'kiln runs RUN steps natively: build for the host platform, or only COPY from stages of other platforms',
      });
    }
    const c = state.image.config.config ?? {};
    const env = state.env.toList();
    const network = ins.network === 'default' ? (engine.request.network ?? 'default') : ins.network;
    const { keys: mountKeys, make: makeMounts } = await this.mounts(ins.mounts, planned, at);
    const epoch = engine.request.sourceDateEpoch;
    const record: RunKey = {
      kind: 'run',
      parent: state.fsKey,
      platform: formatPlatform(state.platform),
      args,
      env,
      user: c.User ?? '',
      workdir: c.WorkingDir || '/',
      network,
      security: ins.security,
      mounts: mountKeys,
      // The script's body is what runs: its content is part of the key, not just its name.
      ...(script ? { script: { name: script.name, digest: sha256(script.data) } } : {}),
      ...(epoch !== undefined ? { epoch } : {}),
    };
    const historyText = runCommandString(args, state.image, (k) => state.env.get(k));
    const key = engine.key(record);
    const hit = await this.cached(key, planned);
    await engine.stepKeyed(vertex, key, record, Boolean(hit), planned);
    if (hit) return { key, cached: true, empty: hit.empty, historyText, layer: hit.layer ?? (await this.emptyLayer()), ...(hit.created ? { created: hit.created } : {}) };

    return this.once(key, async () => {
      const { runStep, RunFailedError } = await import('../sandbox/index.js');
      const lower = await this.lower(state);
      const runMounts = await makeMounts();
      if (script) runMounts.push(await this.scriptMount(script));
      let result;
      try {
        result = await engine.limit(() =>
          runStep({
            store: this.store,
            lower,
            command: args,
            env,
            ...(c.User ? { user: c.User } : {}),
            cwd: c.WorkingDir || '/',
            // What `hostname` says in a BuildKit RUN step.
            hostname: RUN_HOSTNAME,
            network,
            mounts: runMounts,
            secrets: engine.request.secrets ?? {},
            stdout: (chunk: Buffer) => vertex.log('stdout', chunk),
            stderr: (chunk: Buffer) => vertex.log('stderr', chunk),
            ...(engine.request.onFailure === 'shell' ? { onFailure: (open: () => Promise<number>) => this.failureShell(vertex, open) } : {}),
            ...(engine.request.signal ? { signal: engine.request.signal } : {}),
            ...(engine.request.limits ? { limits: engine.request.limits } : {}),
            lease: engine.lease,
            ...(epoch !== undefined ? { sourceDateEpoch: epoch } : {}),
            snapshot: true,
          }),
        );
      } catch (err) {
        if (err instanceof RunFailedError) {
          // buildx shows the step's last output lines in a block above the error; so do we.
          const context = ['------', ` > ${vertex.info.name}:`, ...err.tail.map((l) => `   ${l}`), '------'];
          throw new DockerfileError(err.message, at, { cause: err, context, ...(err.hint ? { hint: err.hint } : {}) });
        }
        throw err;
      }
      for (const w of result.warnings) engine.progress.warn(w, at.line);
      // A step that changed nothing still has its (empty) layer, as in BuildKit's images.
      const layer: LayerRef = { desc: result.layer, diffID: result.diffID };
      const created = await this.remember(key, record, `RUN ${historyText}`, layer, result.empty);
      return { key, cached: false, empty: result.empty, historyText, layer, created };
    }, historyText);
  }

  /**
   * `--on-failure=shell`: the first failing RUN gets an interactive shell in its sandbox, when kiln
   * has a terminal to give it; the build then fails with the step's error as usual.
   */
  private async failureShell(vertex: Vertex, open: () => Promise<number>): Promise<void> {
    if (this.shellOpened) return;
    this.shellOpened = true;
    if (!process.stdin.isTTY) {
      this.engine.progress.warn('--on-failure=shell: standard input is not a terminal, so no shell opens; the build fails as usual');
      return;
    }
    await vertex.shell(open);
  }

  /**
   * Runs a step whose key is not cached yet, once per key: a second stage reaching an identical step
   * while the first still runs it waits for that result (and counts it as cached), as BuildKit
   * merges identical vertices.
   */
  private once(key: Digest, execute: () => Promise<StepResult>, historyText?: string): Promise<StepResult> {
    const running = this.inflight.get(key);
    if (running) {
      return running.then((r) => ({ ...r, cached: true, ...(historyText !== undefined ? { historyText } : {}) }));
    }
    const p = execute();
    this.inflight.set(key, p);
    return p;
  }

  /** The read-only directory holding a heredoc script, mounted at /dev/pipes. */
  private async scriptMount(script: RunScript): Promise<{ mount: Mount; hostPath: string }> {
    const { tempName } = await import('../oci/layout/fs.js');
    const { ownerTag } = await import('../store/owner.js');
    // Named after this process, so a prune can tell a leftover of a killed build.
    const dir = join(this.store.tmpDir, tempName(ownerTag(), '.pipes'));
    await mkdir(dir, { recursive: true });
    this.scratchDirs.push(dir);
    const file = join(dir, script.name);
    await writeFile(file, script.data);
    // Whatever the umask, the step's user (USER may be anyone) must be able to run it.
    await chmod(dir, 0o755);
    await chmod(file, 0o755);
    const mount: Mount = {
      type: 'bind',
      from: '',
      source: '/',
      target: PIPES_DIR,
      readOnly: true,
      sizeLimit: 0,
      cacheId: '',
      cacheSharing: '',
      required: false,
    };
    return { mount, hostPath: dir };
  }

  /** RUN --mount: sources resolved to host paths for the sandbox, and their part of the cache key. */
  /**
   * The mounts' parts of the step's key, and how to make them: a bind mount's source is copied out
   * (the context, or a stage's rootfs) only when the step runs, never for a cached step.
   */
  private async mounts(mounts: readonly Mount[], planned: PlannedStage, at: SourceLocation) {
    const made: Array<() => Promise<{ mount: Mount; hostPath?: string }>> = [];
    const keys: Array<Record<string, string | number | boolean>> = [];
    for (const m of mounts) {
      const key: Record<string, string | number | boolean> = {};
      for (const [k, v] of Object.entries(m)) {
        if (typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean') key[k] = v;
      }
      let hostPath: (() => Promise<string>) | undefined;
      const from = (m as { from?: string }).from ?? '';
      if (m.type === 'bind' || (m.type === 'cache' && from)) {
        // `source` is a path inside the context, stage or image, resolved there (its symlinks
        // relative to its own root); what it names is what gets mounted.
        const source = m.source.replace(/^\/+/, '') || '.';
        if (!from || from === 'context') {
          const ctx = await this.context();
          key.content = await ctx.checksum(source, { followLinks: true, wildcard: false });
          hostPath = async () => join(await this.materializeContext(ctx), await ctx.resolveInContext(source));
        } else {
          const dep = await this.fromState(from, planned, at);
          key.fromKey = dep.fsKey;
          hostPath = async () => resolveInside(await this.materializeState(dep), source);
        }
      }
      if (m.type === 'secret') {
        // Only the id and where it goes: a secret's value must never reach a key, log or layer.
        for (const k of Object.keys(key)) if (!['type', 'cacheId', 'target', 'env', 'required', 'mode', 'uid', 'gid'].includes(k)) delete key[k];
      }
      keys.push(key);
      made.push(async () => (hostPath ? { mount: m, hostPath: await hostPath() } : { mount: m }));
    }
    return { keys, make: async () => Promise.all(made.map((f) => f())) };
  }

  /** The stage or image a `--from` / `from=` names: a stage name or index, else an image reference. */
  private async fromState(from: string, planned: PlannedStage, at: SourceLocation): Promise<StageState> {
    const stages = this.engine.plan.stages;
    const byName = stages.find((s) => s.stage.name && s.stage.name === from.toLowerCase());
    if (byName) return this.engine.stage(byName.stage.index);
    if (/^\d+$/.test(from)) {
      const idx = Number(from);
      if (idx < planned.stage.index) return this.engine.stage(idx);
    }
    return this.engine.imageState(from, at);
  }

  /** A plain directory holding a state's merged rootfs (for bind mounts), made once per build. */
  private materializeState(state: StageState): Promise<string> {
    let p = this.exported.get(state.fsKey);
    if (!p) {
      p = (async () => {
        const dir = join(this.store.tmpDir, `bind-${process.pid}-${state.fsKey.slice(7, 19)}`);
        await rm(dir, { recursive: true, force: true });
        await mkdir(dir, { recursive: true });
        this.scratchDirs.push(dir);
        const { exportRootfs } = await import('../oci/formats/index.js');
        const { stateImage } = await import('./image.js');
        await this.engine.cacheImport?.materialize(state.layers);
        const { image } = await stateImage(this.store, state, { lease: this.engine.lease });
        await exportRootfs(image, { dir }, { ownership: 'keep' });
        return dir;
      })();
      this.exported.set(state.fsKey, p);
    }
    return p;
  }

  /** The build context as a directory holding only what .dockerignore lets through. */
  private async materializeContext(ctx: BuildContext): Promise<string> {
    if (!ctx.ignoreFile || ctx.ignoreFile.patterns.length === 0) return ctx.root;
    const key = sha256(`context:${ctx.root}`);
    let p = this.exported.get(key);
    if (!p) {
      p = (async () => {
        const dir = join(this.store.tmpDir, `context-${process.pid}-${Date.now()}`);
        this.scratchDirs.push(dir);
        await mkdir(dir, { recursive: true });
        for await (const e of ctx.entries()) {
          if (e.type === 'dir') await mkdir(join(dir, e.path), { recursive: true });
          else if (e.type === 'file' || e.type === 'symlink') await cp(join(ctx.root, e.path), join(dir, e.path), { verbatimSymlinks: true, preserveTimestamps: true });
          // FIFOs, sockets and devices are left out: Node cannot make them, and a build reads none.
        }
        return dir;
      })();
      this.exported.set(key, p);
    }
    return p;
  }

  // ------------------------------------------------------------------ COPY / ADD

  async copy(
    state: StageState,
    ins: CopyInstruction | AddInstruction,
    planned: PlannedStage,
    at: SourceLocation,
    vertex?: Vertex,
  ): Promise<StepResult> {
    const sources: Array<{ path: string; digest: string }> = [];
    const remote = ins.sourcePaths.some((s) => REMOTE_SOURCE.test(s));
    // ADD's remote sources are keyed by what they bring, found out before the key is made.
    const downloads = remote && ins.kind === 'ADD' ? await this.remoteSources(ins.sourcePaths, ins.checksum, sources) : undefined;
    try {
      return await this.copyKeyed(state, ins, planned, at, vertex, sources, downloads);
    } finally {
      await downloads?.dispose();
    }
  }

  /**
   * ADD's remote sources, each adding what it brings to `sources`. An http(s) URL downloaded before
   * is asked for with its validators, and costs no download when the server says it has not changed;
   * a git source is keyed by the commit its remote names (`git ls-remote`), so a cached step clones
   * nothing; with `--checksum` either is keyed by the checksum alone, as BuildKit does. Answers the
   * files downloaded and the commits (for the step, if it runs), and the git sources that can only
   * be keyed once cloned.
   */
  private async remoteSources(paths: readonly string[], checksum: string, sources: Array<{ path: string; digest: string }>): Promise<RemoteDownloads> {
    const { classifySource } = await import('./copy/sources.js');
    const { downloadIfChanged } = await import('./copy/http.js');
    const { HttpSourceCache } = await import('./copy/http-cache.js');
    const { resolveGitCommit } = await import('./copy/git.js');
    const { TempSpace } = await import('./copy/temp.js');
    const temp = new TempSpace(this.store.tmpDir);
    const files = new Map<string, Download>();
    const commits = new Map<string, string>();
    const unresolved: string[] = [];
    const cache = new HttpSourceCache(join(this.store.cacheDir, 'http'));
    const signal = this.engine.request.signal;
    try {
      for (const url of paths) {
        if (!REMOTE_SOURCE.test(url)) continue;
        const kind = classifySource(url);
        if (kind.kind === 'git') {
          const pinned = checksum || kind.ref.checksum;
          const commit = pinned ? undefined : await resolveGitCommit(kind.ref, { label: url, ...(signal ? { signal } : {}) });
          if (pinned) sources.push({ path: url, digest: `git:${pinned.toLowerCase()}` });
          else if (commit) {
            commits.set(url, commit);
            sources.push({ path: url, digest: `git:${commit}` });
          } else unresolved.push(url);
          continue;
        }
        if (kind.kind !== 'http') continue;
        if (checksum) {
          sources.push({ path: url, digest: checksum });
          continue;
        }
        const known = await cache.get(url);
        const got = await downloadIfChanged(url, temp, { ...(signal ? { signal } : {}), ...(known ? { validators: known } : {}) });
        // Only a request with validators (so with a record) is answered "not modified".
        if (got === 'not-modified') {
          sources.push({ path: url, digest: `${known!.digest}@${known!.mtime}` });
          continue;
        }
        files.set(url, got);
        await cache.put({ url, digest: got.digest, mtime: got.mtime, ...(got.etag ? { etag: got.etag } : {}), ...(got.lastModified ? { lastModified: got.lastModified } : {}) });
        sources.push({ path: url, digest: `${got.digest}@${got.mtime}` });
      }
    } catch (err) {
      await temp.dispose();
      throw err;
    }
    return { files, commits, unresolved, dispose: () => temp.dispose() };
  }

  private async copyKeyed(
    state: StageState,
    ins: CopyInstruction | AddInstruction,
    planned: PlannedStage,
    at: SourceLocation,
    vertex: Vertex | undefined,
    sources: Array<{ path: string; digest: string }>,
    downloads: RemoteDownloads | undefined,
  ): Promise<StepResult> {
    const engine = this.engine;
    const c = state.image.config.config ?? {};
    const workdir = c.WorkingDir || '/';
    const fromName = ins.kind === 'COPY' ? ins.from : '';
    let source: ReadOnlyFS | undefined;
    let sourceState: StageState | undefined;
    let sourceContext: BuildContext | undefined;
    let sourceRef = 'context';
    let fromKey = 'context';
    // Git sources whose commit is unknown are keyed by the layer they make: they run before the key is known.
    const cloned = downloads?.unresolved ?? [];
    if (fromName) {
      const dep = await this.fromState(fromName, planned, at);
      // Its filesystem is read only on a miss: a cached COPY --from needs no layer of the stage.
      sourceState = dep;
      sourceRef = fromName;
      fromKey = dep.fsKey;
      for (const p of ins.sourcePaths) sources.push({ path: p, digest: '' });
    } else if (ins.sourcePaths.length > 0) {
      const ctx = await this.context();
      // Read through a view only on a miss: a cached COPY loads no copier code.
      sourceContext = ctx;
      const counted = vertex ? this.countContextReads(vertex) : undefined;
      try {
        for (const p of ins.sourcePaths) {
          if (REMOTE_SOURCE.test(p)) continue;
          sources.push({ path: p, digest: await this.contextChecksum(ctx, p) });
        }
      } finally {
        counted?.();
      }
    }
    const record: CopyKey = {
      kind: ins.kind === 'ADD' ? 'add' : 'copy',
      parent: state.fsKey,
      platform: formatPlatform(state.platform),
      from: fromKey,
      sources,
      contents: ins.sourceContents.map((s) => ({ path: s.path, digest: sha256(s.data) })),
      dest: ins.destPath,
      workdir,
      chown: ins.chown,
      chmod: ins.chmod,
      link: ins.link,
      parents: ins.kind === 'COPY' ? ins.parents : false,
      exclude: [...ins.excludePatterns],
      ...(engine.request.sourceDateEpoch !== undefined ? { epoch: engine.request.sourceDateEpoch } : {}),
      ...(ins.kind === 'ADD'
        ? {
            checksum: ins.checksum,
            ...(ins.unpack !== undefined ? { unpack: ins.unpack } : {}),
            ...(ins.keepGitDir !== undefined ? { keepGitDir: ins.keepGitDir } : {}),
          }
        : {}),
    };
    const historyText = copyCreatedBy(ins);
    const execute = async (): Promise<StepResult> => {
      const destination = ins.link ? undefined : await this.view(state, 'image filesystem');
      if (sourceState) source = await this.view(sourceState, `stage ${fromName}`);
      if (sourceContext) {
        const { ContextFS } = await import('./copy/index.js');
        source = new ContextFS(sourceContext.root, sourceContext.ignoreFile?.patterns ?? []);
      }
      const { copyLayer } = await import('./copy/index.js');
      const layerResult = await engine.limit(async () => {
        const out = await copyLayer({
          instruction: ins.kind,
          ...(source ? { source } : {}),
          sourceRef,
          sources: ins.sourcePaths,
          contents: ins.sourceContents,
          dest: ins.destPath,
          workdir,
          ...(destination ? { destination } : {}),
          options: {
            ...(ins.chown ? { chown: ins.chown } : {}),
            ...(ins.chmod ? { chmod: ins.chmod } : {}),
            link: ins.link,
            exclude: ins.excludePatterns,
            ...(ins.kind === 'COPY' ? { parents: ins.parents } : {}),
            ...(ins.kind === 'ADD'
              ? {
                  ...(ins.unpack !== undefined ? { unpack: ins.unpack } : {}),
                  ...(ins.checksum ? { checksum: ins.checksum } : {}),
                  ...(ins.keepGitDir !== undefined ? { keepGitDir: ins.keepGitDir } : {}),
                }
              : {}),
            ...(engine.request.sourceDateEpoch !== undefined ? { sourceDateEpoch: engine.request.sourceDateEpoch } : {}),
          },
          tempDir: this.store.tmpDir,
          ...(downloads ? { downloaded: downloads.files, gitCommits: downloads.commits } : {}),
          ...(engine.request.signal ? { signal: engine.request.signal } : {}),
          onWarning: (w) => engine.progress.warn(w.message, at.line),
        }, sourceState ? { contentDigest: true } : {});
        const empty = out.plan.entries.length === 0;
        const written = await engine.writeLayer(out.stream);
        return { empty, written, content: out.contentDigest() };
      });
      const layer: LayerRef = {
        desc: { mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: layerResult.written.digest, size: layerResult.written.size },
        diffID: layerResult.written.digest,
      };
      record.sources.push(...cloned.map((p) => ({ path: p, digest: layerResult.written.digest })));
      const key = engine.key(record);
      if (layerResult.content) return this.rememberByContent(state, planned, key, record, historyText, layer, layerResult.empty, layerResult.content);
      const created = await this.remember(key, record, historyText, layer, layerResult.empty);
      return { key, cached: false, empty: layerResult.empty, historyText, layer, created };
    };
    if (cloned.length > 0) return execute();
    const key = engine.key(record);
    const hit = await this.cached(key, planned);
    if (vertex) await engine.stepKeyed(vertex, key, record, Boolean(hit), planned);
    if (hit) {
      // A copy found by its lookup key: the record of the key it leads to is what an export sends.
      if (hit.resultKey && !this.records.has(hit.resultKey)) this.records.set(hit.resultKey, (await this.cached(hit.resultKey, planned)) ?? hit);
      return {
        key: hit.resultKey ?? key,
        cached: true,
        empty: hit.empty,
        historyText,
        layer: hit.layer ?? (await this.emptyLayer()),
        ...(hit.created ? { created: hit.created } : {}),
        ...(hit.resultKey ? { lookupKey: key } : {}),
      };
    }
    return this.once(key, execute, historyText);
  }

  /**
   * A COPY --from=STAGE that ran (its lookup key missed): the steps after it build on its content
   * key. An earlier copy of the same files, found by that key, gives its layer and history time, so
   * the image comes out as before; else this copy is recorded under it. Either way the lookup key
   * leads to the content key next time.
   */
  private async rememberByContent(
    state: StageState,
    planned: PlannedStage,
    lookupKey: Digest,
    record: CopyKey,
    historyText: string,
    layer: LayerRef,
    empty: boolean,
    content: string,
  ): Promise<StepResult> {
    const contentRecord: CopyContentKey = {
      kind: 'copy-content',
      parent: state.fsKey,
      platform: record.platform,
      content,
      ...(record.epoch !== undefined ? { epoch: record.epoch } : {}),
    };
    const key = this.engine.key(contentRecord);
    const earlier = await this.cached(key, planned);
    let created: string;
    if (earlier?.layer) {
      layer = earlier.layer;
      empty = earlier.empty;
      created = await this.remember(lookupKey, record, historyText, layer, empty, { ...(earlier.created ? { created: earlier.created } : {}), resultKey: key });
    } else {
      created = await this.remember(key, contentRecord, historyText, layer, empty);
      await this.remember(lookupKey, record, historyText, layer, empty, { created, resultKey: key });
    }
    return { key, lookupKey, cached: false, empty, historyText, layer, created };
  }

  /**
   * Reports, as the step's progress, the context files read (hashed) while it waits for its
   * checksums: a cold scan of a large context is the long part of such a step. Answers the stop.
   */
  private countContextReads(vertex: Vertex): () => void {
    let n = 0;
    let shown = 0;
    const counter = (): void => {
      n++;
      const now = Date.now();
      if (now - shown >= 200) {
        shown = now;
        vertex.items(n, undefined, 'context files read');
      }
    };
    this.contextReaders.add(counter);
    return () => {
      this.contextReaders.delete(counter);
      if (n > 0) vertex.items(n, n, 'context files read');
    };
  }

  /** The content checksum of one COPY source in the context, as a one-line error when it is missing. */
  private async contextChecksum(ctx: BuildContext, path: string): Promise<Digest> {
    try {
      return await ctx.checksum(path, { followLinks: true, wildcard: true });
    } catch (err) {
      const { ContextPathNotFoundError } = await import('../context/index.js');
      if (err instanceof ContextPathNotFoundError) {
        const clean = '/' + path.replace(/^\.?\/+/, '');
        throw new KilnError('COPY_SOURCE_NOT_FOUND', `failed to calculate checksum of ref context: "${clean}": not found`, {
          hint: 'the path is missing from the build context, or excluded by .dockerignore',
          cause: err,
        });
      }
      throw err;
    }
  }

  // ------------------------------------------------------------------ WORKDIR

  async mkdir(state: StageState, dir: string, planned: PlannedStage, vertex?: Vertex): Promise<StepResult> {
    const user = state.image.config.config?.User ?? '';
    const epoch = this.engine.request.sourceDateEpoch;
    const record: MkdirKey = { kind: 'mkdir', parent: state.fsKey, platform: formatPlatform(state.platform), path: dir, user, ...(epoch !== undefined ? { epoch } : {}) };
    const key = this.engine.key(record);
    const hit = await this.cached(key, planned);
    if (vertex) await this.engine.stepKeyed(vertex, key, record, Boolean(hit), planned);
    if (hit) return { key, cached: true, empty: hit.empty, layer: hit.layer ?? (await this.emptyLayer()), ...(hit.created ? { created: hit.created } : {}) };
    return this.once(key, () => this.makeDir(state, dir, user, record, key));
  }

  private async makeDir(state: StageState, dir: string, user: string, record: MkdirKey, key: Digest): Promise<StepResult> {
    const view = await this.view(state, 'image filesystem');
    const entries: TarEntrySpec[] = [];
    let owner = { uid: 0, gid: 0 };
    if (user) {
      const { lookupUser } = await import('./fsview/index.js');
      const u = await lookupUser(view, user, { purpose: 'chown' });
      owner = { uid: u.uid, gid: u.gid };
    }
    const real = view ? await view.resolve(dir, { followFinal: true }) : dir;
    const mtime = record.epoch ?? Math.floor(Date.now() / 1000);
    let prefix = '';
    for (const part of real.split('/').filter(Boolean)) {
      prefix += `/${part}`;
      const e = view ? await view.lstatPhysical(prefix) : undefined;
      if (e && e.type !== 'directory') {
        throw new KilnError('WORKDIR_NOT_DIRECTORY', `mkdir ${dir}: ${prefix} exists and is not a directory`);
      }
      if (!e) entries.push({ path: prefix, type: 'directory', mode: 0o755, uid: owner.uid, gid: owner.gid, mtime });
    }
    if (entries.length === 0) {
      // The directory is there already: the step's layer is empty, as BuildKit's mkdir gives.
      const layer = await this.emptyLayer();
      const created = await this.remember(key, record, `WORKDIR ${dir}`, layer, true);
      return { key, cached: false, empty: true, layer, created };
    }
    const { writeTarEntries } = await import('../oci/layer/index.js');
    const written = await this.store.writeBlob(writeTarEntries(entries), { lease: this.engine.lease });
    const layer: LayerRef = { desc: { mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: written.digest, size: written.size }, diffID: written.digest };
    const created = await this.remember(key, record, `WORKDIR ${dir}`, layer, false);
    return { key, cached: false, empty: false, layer, created };
  }

  /** The layer of a step that changed nothing: an empty tar (what BuildKit's diff of no change is). */
  emptyLayer(): Promise<LayerRef> {
    // The tar writer loads only here: a build whose steps are all cached never needs it.
    this.empty ??= import('../oci/layer/index.js')
      .then(({ writeTarEntries }) => this.store.writeBlob(writeTarEntries([]), { lease: this.engine.lease }))
      .then((w) => ({
        desc: { mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: w.digest, size: w.size },
        diffID: w.digest,
      }));
    return this.empty;
  }

  async dispose(): Promise<void> {
    for (const d of this.scratchDirs.splice(0)) await rm(d, { recursive: true, force: true }).catch(() => undefined);
  }
}

/** A heredoc script BuildKit mounts at /dev/pipes/<name> and runs through the shell. */
export interface RunScript {
  name: string;
  data: string;
}

/** Where a heredoc with a `#!` line is mounted, as in BuildKit. */
const PIPES_DIR = '/dev/pipes';

/**
 * The argv of a RUN, as BuildKit's dispatchRun builds it. A RUN whose whole command is one heredoc
 * runs the heredoc's body as the shell script; with a `#!` line the body becomes an executable file
 * at /dev/pipes/<name> that the shell runs (so the interpreter comes from the script itself). A
 * heredoc inside a longer command is put back together and handed to the shell, which reads it.
 */
export function runCommand(state: StageState, ins: ExpandedRunInstruction, at: SourceLocation): { args: string[]; script?: RunScript } {
  let cmdLine = ins.cmdLine;
  let script: RunScript | undefined;
  if (ins.files.length > 0) {
    if (cmdLine.length !== 1 || !ins.prependShell) {
      throw new DockerfileError(`parsing produced an invalid run command: [${cmdLine.join(' ')}]`, at);
    }
    const whole = parseHeredocWord(cmdLine[0]!);
    if (whole) {
      const first = ins.files[0]!;
      const data = first.chomp ? chompHeredocContent(first.data) : first.data;
      if (state.image.config.os !== 'windows' && data.startsWith('#!')) {
        script = { name: first.name, data };
        cmdLine = [posix.join(PIPES_DIR, first.name)];
      } else {
        cmdLine = [data];
      }
    } else {
      cmdLine = [cmdLine[0]! + ins.files.map((f) => `\n${f.data}${f.name}`).join('')];
    }
  }
  return { args: runArgs(state.image, cmdLine, ins.prependShell), ...(script ? { script } : {}) };
}

/**
 * `path` inside the host directory `root`, with symlinks resolved as if `root` were `/` (a link
 * can never lead out of it); missing elements are taken as they are.
 */
async function resolveInside(root: string, path: string): Promise<string> {
  const done: string[] = [];
  const todo = path.split('/').reverse();
  let links = 0;
  while (todo.length > 0) {
    const el = todo.pop()!;
    if (el === '' || el === '.') continue;
    if (el === '..') {
      done.pop();
      continue;
    }
    done.push(el);
    const st = await lstat(join(root, ...done)).catch(() => undefined);
    if (!st?.isSymbolicLink()) continue;
    if (++links > 255) throw new KilnError('SYMLINK_LOOP', `too many levels of symbolic links resolving ${path}`);
    const target = await readlink(join(root, ...done));
    done.pop();
    if (target.startsWith('/')) done.length = 0;
    todo.push(...target.split('/').reverse());
  }
  return join(root, ...done);
}
