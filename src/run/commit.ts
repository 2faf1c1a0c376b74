/**
 * `kiln commit`: a container's read-write layer as a new image. The upper dir becomes a layer with
 * the same code a RUN step's does (sandbox/diff.ts: overlay whiteouts to OCI ones, or a tree
 * compare with the copy snapshotter), stacked on the image the container came from; the config is
 * the image's with the container's own settings (argv, env, user, working directory, labels), as
 * docker commit makes it, then the `--change` instructions.
 */
import { existsSync, mkdirSync, readdirSync } from 'node:fs';
import type { Readable } from 'node:stream';
import { UsageError } from '../errors.js';
import type { Digest } from '../oci/digest.js';
import { imageFor } from '../oci/layout/index.js';
import { MediaType } from '../oci/mediatypes.js';
import { Annotation, type ImageConfig, type Manifest } from '../oci/types.js';
import type { Store } from '../store/store.js';
import { ContainerStore, type ContainerRecord } from './containers.js';

export interface CommitOptions {
  names: string[];
  author?: string;
  message?: string;
  changes: string[];
}

export interface CommitResult {
  /** The image ID (config digest) and the manifest digest. */
  id: Digest;
  digest: Digest;
}

export async function commitContainer(store: Store, rec: ContainerRecord, o: CommitOptions): Promise<CommitResult> {
  const { commitCopy, commitUpper } = await import('../sandbox/diff.js');
  const { LayerStack } = await import('../sandbox/layers.js');
  const { currentNamespace } = await import('../sandbox/userns.js');
  const { restoreOwnersTransform } = await import('../sandbox/squash.js');
  const containers = ContainerStore.open(store.root);
  const base = await store.resolve(rec.imageDigest);
  const baseManifest = await base.manifest();
  const baseConfig = await base.configFile();
  const lower = await store.lowerDirs(base);
  const created = new Date().toISOString();
  return store.withLease(
    async (lease) => {
      const lowers = new LayerStack(lower.absolute);
      const commitOpts = {
        store,
        lease,
        ...(currentNamespace()?.squashed ? { transform: (tar: Readable) => restoreOwnersTransform(tar, lowers) } : {}),
      };
      const copyTree = containers.pathOf(rec.id, 'rootfs');
      const upper = containers.pathOf(rec.id, 'upper');
      const layer = existsSync(copyTree) && readdirSync(copyTree).length
        ? await commitCopy(copyTree, lowers, Date.parse(rec.created), commitOpts)
        : await commitUpper(ensureDir(upper), commitOpts);

      const config: ImageConfig = JSON.parse(JSON.stringify(baseConfig)) as ImageConfig;
      config.created = created;
      if (o.author !== undefined) config.author = o.author;
      const c = { ...(config.config ?? {}) };
      c.Cmd = rec.config.cmd.length ? rec.config.cmd : null;
      c.Entrypoint = rec.config.entrypoint.length ? rec.config.entrypoint : null;
      c.Env = rec.config.env;
      if (rec.config.user) c.User = rec.config.user;
      else delete c.User;
      if (rec.config.workingDir) c.WorkingDir = rec.config.workingDir;
      if (rec.config.labels) c.Labels = { ...c.Labels, ...rec.config.labels };
      config.config = c;
      for (const change of o.changes) applyChange(config, change);
      config.rootfs = { type: 'layers', diff_ids: [...baseConfig.rootfs.diff_ids, layer.diffID] };
      config.history = [
        ...(config.history ?? []),
        {
          created,
          created_by: [rec.config.path, ...rec.config.args].join(' '),
          ...(o.author !== undefined ? { author: o.author } : {}),
          ...(o.message !== undefined ? { comment: o.message } : {}),
        },
      ];
      const configBlob = await store.writeBlob(Buffer.from(JSON.stringify(config)), { lease });
      const manifest: Manifest = {
        schemaVersion: 2,
        mediaType: MediaType.ociManifest,
        config: { mediaType: MediaType.ociConfig, digest: configBlob.digest, size: configBlob.size },
        layers: [...baseManifest.layers, layer.layer],
        annotations: { [Annotation.created]: created },
      };
      const manifestBlob = await store.writeBlob(Buffer.from(JSON.stringify(manifest)), { lease });
      const image = await imageFor(store.layout, { digest: manifestBlob.digest, size: manifestBlob.size, mediaType: MediaType.ociManifest });
      await store.putImage(image, { names: o.names, lease });
      return { id: configBlob.digest, digest: manifestBlob.digest };
    },
    { label: 'commit' },
  );
}

/** A container that never ran has no upper dir yet: its layer is empty. */
function ensureDir(dir: string): string {
  mkdirSync(dir, { recursive: true });
  return dir;
}

/** One `--change` instruction (a Dockerfile line) applied to the config. */
export function applyChange(config: ImageConfig, change: string): void {
  const m = /^\s*(\w+)\s+(.*)$/s.exec(change);
  if (!m) throw new UsageError(`invalid --change "${change}": expected INSTRUCTION ARGUMENTS`);
  const keyword = m[1]!.toUpperCase();
  const rest = m[2]!.trim();
  const c = (config.config ??= {});
  const list = (): string[] => {
    if (rest.startsWith('[')) {
      try {
        const v = JSON.parse(rest) as unknown;
        if (Array.isArray(v) && v.every((x) => typeof x === 'string')) return v as string[];
      } catch {
        // shell form below
      }
    }
    return ['/bin/sh', '-c', rest];
  };
  const pairs = (): Array<[string, string]> => {
    const out: Array<[string, string]> = [];
    if (!rest.includes('=')) {
      const sp = rest.indexOf(' ');
      out.push(sp < 0 ? [rest, ''] : [rest.slice(0, sp), rest.slice(sp + 1).trim()]);
      return out;
    }
    for (const word of rest.match(/(?:[^\s"]+|"[^"]*")+/g) ?? []) {
      const eq = word.indexOf('=');
      if (eq <= 0) throw new UsageError(`invalid --change "${change}": ${word} is not KEY=VALUE`);
      out.push([word.slice(0, eq), word.slice(eq + 1).replace(/^"(.*)"$/s, '$1')]);
    }
    return out;
  };
  switch (keyword) {
    case 'CMD':
      c.Cmd = list();
      break;
    case 'ENTRYPOINT':
      c.Entrypoint = list();
      break;
    case 'ENV':
      for (const [k, v] of pairs()) c.Env = [...(c.Env ?? []).filter((e) => !e.startsWith(`${k}=`)), `${k}=${v}`];
      break;
    case 'LABEL':
      for (const [k, v] of pairs()) c.Labels = { ...c.Labels, [k]: v };
      break;
    case 'USER':
      c.User = rest;
      break;
    case 'WORKDIR':
      c.WorkingDir = rest;
      break;
    case 'STOPSIGNAL':
      c.StopSignal = rest;
      break;
    case 'EXPOSE':
      for (const p of rest.split(/\s+/)) c.ExposedPorts = { ...c.ExposedPorts, [p.includes('/') ? p : `${p}/tcp`]: {} };
      break;
    case 'VOLUME':
      for (const v of rest.startsWith('[') ? (JSON.parse(rest) as string[]) : rest.split(/\s+/)) c.Volumes = { ...c.Volumes, [v]: {} };
      break;
    default:
      throw new UsageError(`invalid --change "${change}": ${keyword} is not one of CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, USER, VOLUME, WORKDIR, STOPSIGNAL`);
  }
}
