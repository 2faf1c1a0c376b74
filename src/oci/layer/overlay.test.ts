/**
 * Whiteouts against the real kernel: an overlay upper dir is tarred into an OCI layer, the layer is
 * extracted back into overlay's lower-dir form and mounted, and the kernel must show the same tree.
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  appendFileSync,
  chmodSync,
  linkSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable, Writable } from 'node:stream';
import { getAttributeSync, listAttributesSync, setAttributeSync } from '@napi-rs/xattr';
import { extract as tarExtract } from 'tar-stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { extractLayer } from './extract.js';
import { headerXattrs, type Header } from './tar.js';
import { writeLayerTar } from './writer.js';

function run(cmd: string, args: string[]): void {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed: ${r.stderr || r.error?.message}`);
}

async function toBuffer(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

async function headers(tar: Buffer): Promise<Header[]> {
  const out: Header[] = [];
  const ex = tarExtract();
  Readable.from([tar]).pipe(ex as unknown as Writable);
  for await (const entry of ex) {
    out.push(entry.header);
    entry.resume();
  }
  return out;
}

/** What a directory shows: paths with type, mode and content, as a reader of the mount sees them. */
function view(root: string, rel = ''): string[] {
  const out: string[] = [];
  for (const name of readdirSync(join(root, rel)).sort()) {
    const p = rel ? `${rel}/${name}` : name;
    const path = join(root, p);
    const st = lstatSync(path);
    const mode = (st.mode & 0o7777).toString(8);
    if (st.isDirectory()) {
      out.push(`${p}/ ${mode}`);
      out.push(...view(root, p));
    } else if (st.isSymbolicLink()) out.push(`${p} -> ${readlinkSync(path)}`);
    else out.push(`${p} ${mode} ${createHash('sha256').update(readFileSync(path)).digest('hex').slice(0, 12)}`);
  }
  return out;
}

let base: string;
const mounted: string[] = [];

beforeAll(() => {
  base = mkdtempSync(join(tmpdir(), 'kiln-layer-ovl-'));
});
afterAll(() => {
  for (const m of mounted.reverse()) spawnSync('umount', [m]);
  // overlay leaves work/work with mode 000
  spawnSync('chmod', ['-R', 'u+rwx', base]);
  rmSync(base, { recursive: true, force: true });
});

function mountOverlay(options: string, at: string): void {
  mkdirSync(at, { recursive: true });
  run('mount', ['-t', 'overlay', 'overlay', '-o', options, at]);
  mounted.push(at);
}

function umount(at: string): void {
  run('umount', [at]);
  mounted.splice(mounted.indexOf(at), 1);
}

describe('overlay upper dir ⇄ OCI layer', () => {
  it('translates whiteouts and opaque dirs both ways, and the kernel agrees', async () => {
    const lower = join(base, 'lower');
    const upper = join(base, 'upper');
    const work = join(base, 'work');
    const merged = join(base, 'merged');
    for (const d of [lower, upper, work]) mkdirSync(d, { recursive: true });

    // The lower layer.
    mkdirSync(join(lower, 'etc'));
    writeFileSync(join(lower, 'etc/keep'), 'keep');
    writeFileSync(join(lower, 'etc/remove-me'), 'bye');
    writeFileSync(join(lower, 'etc/modify-me'), 'v1');
    mkdirSync(join(lower, 'srv/data'), { recursive: true });
    writeFileSync(join(lower, 'srv/data/a'), 'a');
    writeFileSync(join(lower, 'srv/data/b'), 'b');
    mkdirSync(join(lower, 'var/cache/deep'), { recursive: true });
    writeFileSync(join(lower, 'var/cache/deep/file'), 'cached');
    writeFileSync(join(lower, 'top-file'), 'top');
    symlinkSync('etc/keep', join(lower, 'link-to-keep'));

    // A RUN step's changes, made through the mount.
    mountOverlay(`lowerdir=${lower},upperdir=${upper},workdir=${work},userxattr`, merged);
    rmSync(join(merged, 'etc/remove-me'));
    rmSync(join(merged, 'top-file'));
    rmSync(join(merged, 'link-to-keep'));
    appendFileSync(join(merged, 'etc/modify-me'), ' and v2');
    chmodSync(join(merged, 'etc/keep'), 0o600);
    rmSync(join(merged, 'srv/data'), { recursive: true });
    mkdirSync(join(merged, 'srv/data'));
    writeFileSync(join(merged, 'srv/data/c'), 'new c');
    rmSync(join(merged, 'var/cache/deep/file'));
    mkdirSync(join(merged, 'opt/app'), { recursive: true });
    writeFileSync(join(merged, 'opt/app/bin'), 'binary');
    linkSync(join(merged, 'opt/app/bin'), join(merged, 'opt/app/bin-alias'));
    const expected = view(merged);
    umount(merged);

    // The upper dir really is in overlay's form: whiteouts are char 0/0 devices sharing one inode.
    const wh = lstatSync(join(upper, 'etc/remove-me'));
    expect(wh.isCharacterDevice() && wh.rdev === 0).toBe(true);
    expect(wh.nlink).toBeGreaterThan(1);
    expect(listAttributesSync(join(upper, 'srv/data'))).toContain('user.overlay.opaque');

    // upper → layer
    const tar = await toBuffer(writeLayerTar(upper, { mode: 'overlay-diff' }));
    const list = await headers(tar);
    const byName = new Map(list.map((h) => [h.name, h]));
    expect(list.map((h) => h.name)).toEqual([
      '.wh.link-to-keep',
      '.wh.top-file',
      'etc/',
      'etc/.wh.remove-me',
      'etc/keep',
      'etc/modify-me',
      'opt/',
      'opt/app/',
      'opt/app/bin',
      'opt/app/bin-alias',
      'srv/',
      'srv/data/',
      'srv/data/.wh..wh..opq',
      'srv/data/c',
      'var/',
      'var/cache/',
      'var/cache/deep/',
      'var/cache/deep/.wh.file',
    ]);
    for (const name of ['.wh.top-file', '.wh.link-to-keep', 'etc/.wh.remove-me', 'var/cache/deep/.wh.file', 'srv/data/.wh..wh..opq']) {
      expect(byName.get(name)).toMatchObject({ type: 'file', size: 0 });
    }
    expect(byName.get('etc/.wh.remove-me')).toMatchObject({ mode: 0, uid: 0, gid: 0 });
    expect(byName.get('opt/app/bin-alias')).toMatchObject({ type: 'link', linkname: 'opt/app/bin' });
    for (const h of list) {
      expect(headerXattrs(h).filter(([n]) => n.includes('overlay.'))).toEqual([]);
    }

    // layer → lower-dir form, mounted as the top lower: the kernel must show the same tree.
    const snap = join(base, 'snap');
    mkdirSync(snap);
    await extractLayer(Readable.from([tar]), snap, { whiteouts: 'overlay' });
    const node = lstatSync(join(snap, 'etc/remove-me'));
    expect(node.isCharacterDevice() && node.rdev === 0).toBe(true);
    expect(getAttributeSync(join(snap, 'srv/data'), 'user.overlay.opaque')?.toString()).toBe('y');
    const check = join(base, 'check');
    mountOverlay(`lowerdir=${snap}:${lower},userxattr`, check);
    try {
      expect(view(check)).toEqual(expected);
    } finally {
      umount(check);
    }

    // layer applied onto a copy of the lower (flattening): the same tree again.
    const flat = join(base, 'flat');
    run('cp', ['-a', lower, flat]);
    await extractLayer(Readable.from([tar]), flat, { whiteouts: 'apply' });
    expect(view(flat)).toEqual(expected);
  });

  it('refuses overlay upper dirs that depend on their lowers (redirect_dir, metacopy)', async () => {
    const upper = join(base, 'redirect-upper');
    mkdirSync(join(upper, 'moved'), { recursive: true });
    setAttributeSync(join(upper, 'moved'), 'user.overlay.redirect', '/orig');
    await expect(toBuffer(writeLayerTar(upper, { mode: 'overlay-diff' }))).rejects.toMatchObject({ code: 'LAYER_SOURCE' });
  });
});
