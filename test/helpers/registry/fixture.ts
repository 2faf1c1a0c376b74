/**
 * A tiny, valid OCI image written straight into an OCI layout directory: one gzip layer holding
 * one small file, a config and a manifest. It is built by hand (not with kiln) so the registry
 * helpers can be tested with real tools independently of the code they will be used to test, and
 * deterministically, so its digests are the same on every run with the same content.
 */
import { createHash } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { pack } from 'tar-stream';

export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
}

export interface TinyImage {
  /** the OCI layout directory */
  dir: string;
  tag: string;
  /** `oci:<dir>:<tag>`, for skopeo */
  ref: string;
  manifest: Descriptor;
  config: Descriptor;
  layer: Descriptor;
  /** the exact bytes of each blob, by digest */
  blobs: Map<string, Buffer>;
}

const sha256 = (b: Buffer): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;

/** A tar of the given files (fixed metadata, so the same files give the same bytes). */
export async function tarOf(files: Record<string, string | Buffer>): Promise<Buffer> {
  const p = pack();
  const chunks: Buffer[] = [];
  p.on('data', (c: unknown) => chunks.push(c as Buffer));
  const done = new Promise<void>((resolve, reject) => {
    p.on('end', () => resolve());
    p.on('error', reject);
  });
  for (const [name, content] of Object.entries(files)) {
    p.entry({ name, mode: 0o644, mtime: new Date(0), uid: 0, gid: 0, type: 'file' }, content);
  }
  p.finalize();
  await done;
  return Buffer.concat(chunks);
}

export async function writeTinyOciImage(
  dir: string,
  options: { tag?: string; files?: Record<string, string> } = {},
): Promise<TinyImage> {
  const tag = options.tag ?? 'latest';
  const tar = await tarOf(options.files ?? { 'hello.txt': 'hello from kiln\n' });
  const layerBytes = gzipSync(tar, { level: 9 });
  const configBytes = Buffer.from(
    JSON.stringify({
      architecture: 'amd64',
      os: 'linux',
      config: { Cmd: ['/hello.txt'] },
      rootfs: { type: 'layers', diff_ids: [sha256(tar)] },
      history: [{ created: '1970-01-01T00:00:00Z', created_by: 'kiln test fixture' }],
    }),
  );
  const layer: Descriptor = {
    mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip',
    digest: sha256(layerBytes),
    size: layerBytes.length,
  };
  const config: Descriptor = {
    mediaType: 'application/vnd.oci.image.config.v1+json',
    digest: sha256(configBytes),
    size: configBytes.length,
  };
  const manifestBytes = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config,
      layers: [layer],
    }),
  );
  const manifest: Descriptor = {
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    digest: sha256(manifestBytes),
    size: manifestBytes.length,
  };

  const blobs = new Map<string, Buffer>([
    [layer.digest, layerBytes],
    [config.digest, configBytes],
    [manifest.digest, manifestBytes],
  ]);
  await mkdir(join(dir, 'blobs', 'sha256'), { recursive: true });
  for (const [digest, bytes] of blobs) await writeFile(join(dir, 'blobs', 'sha256', digest.slice('sha256:'.length)), bytes);
  await writeFile(join(dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  await writeFile(
    join(dir, 'index.json'),
    JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.index.v1+json',
      manifests: [{ ...manifest, annotations: { 'org.opencontainers.image.ref.name': tag } }],
    }),
  );
  return { dir, tag, ref: `oci:${dir}:${tag}`, manifest, config, layer, blobs };
}
