/**
 * The image commands as a user runs them, against a temp store (`--root`): import the busybox
 * rootfs, list, inspect, show history, tag, remove, prune, report disk usage, and the one-line
 * errors for images that do not exist.
 */
import { createHash } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hostPlatform } from '../../src/oci/platform.js';
import { humanSize } from '../../src/cli/image/units.js';
import { BUSYBOX_IMAGE, busyboxImportEnv, busyboxStore, busyboxTar } from '../helpers/busybox.js';
import { kiln } from '../helpers/kiln.js';
import { kilnAt, storeState, tempDir, type TempDir } from '../helpers/store.js';

let tmp: TempDir;
let root: string;
let tar: string;
let id = '';
let diffID = '';

beforeAll(async () => {
  tmp = await tempDir('kiln-images-');
  root = join(tmp.dir, 'store');
  tar = await busyboxTar();
  diffID = `sha256:${createHash('sha256').update(readFileSync(tar)).digest('hex')}`;
});
afterAll(async () => {
  await tmp?.cleanup();
});

/** Column start offsets of a table line, found from the header's titles. */
function columns(header: string, titles: string[]): number[] {
  return titles.map((t) => header.indexOf(t));
}

describe('kiln import and kiln images', () => {
  it('imports the busybox rootfs as kiln-test/busybox and prints the image ID', () => {
    const r = kilnAt(root, ['import', tar, 'kiln-test/busybox'], { env: busyboxImportEnv() });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/^sha256:[a-f0-9]{64}\n$/);
    id = r.stdout.trim();
  });

  it('gives the same image ID for the same tar and SOURCE_DATE_EPOCH in another store', async () => {
    const other = await busyboxStore();
    try {
      expect(other.id).toBe(id);
    } finally {
      await other.cleanup();
    }
  });

  it('lists the image in docker\'s table', () => {
    const r = kilnAt(root, ['images']);
    expect(r.status).toBe(0);
    const lines = r.stdout.split('\n');
    expect(lines).toHaveLength(3);
    expect(lines[2]).toBe('');
    expect(lines[0]).toMatch(/^REPOSITORY +TAG +IMAGE ID +CREATED +SIZE$/);
    const cols = columns(lines[0]!, ['REPOSITORY', 'TAG', 'IMAGE ID', 'CREATED', 'SIZE']);
    const row = lines[1]!;
    expect(row.slice(cols[0], cols[1]).trim()).toBe('kiln-test/busybox');
    expect(row.slice(cols[1], cols[2]).trim()).toBe('latest');
    expect(row.slice(cols[2], cols[3]).trim()).toBe(id.slice(7, 19));
    expect(row.slice(cols[3], cols[4]).trim()).toMatch(/^\d+ (years|months|weeks|days) ago$/);
    expect(row.slice(cols[4])).toBe(humanSize(statSync(tar).size));
    // Columns are as wide as their widest cell plus three spaces (docker's tabwriter).
    expect(cols[1]).toBe('kiln-test/busybox'.length + 3);
  });

  it('-q prints short IDs, --no-trunc full ones, --format json one object per line', () => {
    expect(kilnAt(root, ['images', '-q']).stdout).toBe(`${id.slice(7, 19)}\n`);
    expect(kilnAt(root, ['images', '-q', '--no-trunc']).stdout).toBe(`${id}\n`);
    const json = kilnAt(root, ['images', '--format', 'json']).stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, string>);
    expect(json).toHaveLength(1);
    expect(json[0]).toMatchObject({ Repository: 'kiln-test/busybox', Tag: 'latest', ID: id.slice(7, 19), Size: humanSize(statSync(tar).size) });
    expect(Object.keys(json[0]!)).toEqual(['Containers', 'CreatedAt', 'CreatedSince', 'Digest', 'ID', 'Repository', 'SharedSize', 'Size', 'Tag', 'UniqueSize', 'VirtualSize']);
    expect(kilnAt(root, ['images', '--format', '{{.Repository}}:{{.Tag}}']).stdout).toBe('kiln-test/busybox:latest\n');
    expect(kilnAt(root, ['images', '-a', '-q']).stdout).toBe(`${id.slice(7, 19)}\n`);
  });

  it('filters by reference and dangling', () => {
    expect(kilnAt(root, ['images', '-q', 'kiln-test/busybox']).stdout).toBe(`${id.slice(7, 19)}\n`);
    expect(kilnAt(root, ['images', '-q', 'kiln-test/*:latest']).stdout).toBe(`${id.slice(7, 19)}\n`);
    expect(kilnAt(root, ['images', '-q', 'busybox']).stdout).toBe('');
    expect(kilnAt(root, ['images', '-q', '--filter', 'dangling=true']).stdout).toBe('');
    expect(kilnAt(root, ['images', '-q', '-f', 'dangling=false']).stdout).toBe(`${id.slice(7, 19)}\n`);
    const bad = kilnAt(root, ['images', '--filter', 'nonsense=1']);
    expect(bad.status).toBe(1);
    expect(bad.stderr).toBe("kiln: invalid filter 'nonsense'\n");
  });

  it('reads the store from $KILN_ROOT, and --root after the command wins over it', () => {
    expect(kiln(['images', '-q'], { env: { ...process.env, KILN_ROOT: root } }).stdout).toBe(`${id.slice(7, 19)}\n`);
    const elsewhere = join(tmp.dir, 'empty-store');
    expect(kiln(['images', '-q', '--root', root], { env: { ...process.env, KILN_ROOT: elsewhere } }).stdout).toBe(`${id.slice(7, 19)}\n`);
  });
});

describe('kiln inspect and kiln history', () => {
  it("prints docker image inspect's JSON", () => {
    const r = kilnAt(root, ['inspect', BUSYBOX_IMAGE]);
    expect(r.status).toBe(0);
    expect(r.stdout.startsWith('[\n    {\n        "Id": ')).toBe(true);
    const [doc] = JSON.parse(r.stdout) as Array<Record<string, any>>;
    const host = hostPlatform();
    expect(doc).toMatchObject({
      Id: id,
      RepoTags: ['kiln-test/busybox:latest'],
      Parent: '',
      Comment: 'Imported from -',
      Created: '2024-01-01T00:00:00.000Z',
      Architecture: host.architecture,
      Os: 'linux',
      Size: statSync(tar).size,
      RootFS: { Type: 'layers', Layers: [diffID] },
    });
    expect(doc!.RepoDigests).toEqual([`kiln-test/busybox@${doc!.Descriptor.digest}`]);
    expect(doc!.Descriptor.mediaType).toBe('application/vnd.oci.image.manifest.v1+json');
    expect(Object.keys(doc!).slice(0, 10)).toEqual(['Id', 'RepoTags', 'RepoDigests', 'Parent', 'Comment', 'Created', 'DockerVersion', 'Author', 'Config', 'Architecture']);
  });

  it('finds the image by short ID, full ID, manifest digest and name@digest', () => {
    const digest = (JSON.parse(kilnAt(root, ['inspect', BUSYBOX_IMAGE]).stdout) as Array<{ Descriptor: { digest: string } }>)[0]!.Descriptor.digest;
    for (const ref of [id.slice(7, 19), id.slice(7, 11), id, digest, `kiln-test/busybox@${digest}`, 'docker.io/kiln-test/busybox:latest']) {
      const r = kilnAt(root, ['inspect', '-f', '{{.Id}}', ref]);
      expect(r.stderr, ref).toBe('');
      expect(r.stdout, ref).toBe(`${id}\n`);
    }
    expect(kilnAt(root, ['inspect', '--format', '{{json .RootFS.Layers}} {{.Os}}', BUSYBOX_IMAGE]).stdout).toBe(`["${diffID}"] linux\n`);
  });

  it('shows the history as docker does', () => {
    const r = kilnAt(root, ['history', BUSYBOX_IMAGE]);
    expect(r.status).toBe(0);
    const lines = r.stdout.split('\n');
    expect(lines[0]).toMatch(/^IMAGE +CREATED +CREATED BY +SIZE +COMMENT$/);
    expect(lines).toHaveLength(3);
    const cols = columns(lines[0]!, ['IMAGE', 'CREATED', 'CREATED BY', 'SIZE', 'COMMENT']);
    expect(lines[1]!.slice(cols[0], cols[1]).trim()).toBe(id.slice(7, 19));
    expect(lines[1]!.slice(cols[3], cols[4]).trim()).toBe(humanSize(statSync(tar).size));
    expect(lines[1]!.slice(cols[4])).toBe('Imported from -');
    expect(kilnAt(root, ['history', '-q', '--no-trunc', BUSYBOX_IMAGE]).stdout).toBe(`${id}\n`);
    expect(kilnAt(root, ['history', '--human=false', '--format', '{{.Size}} {{.CreatedSince}}', BUSYBOX_IMAGE]).stdout).toBe(
      `${statSync(tar).size} 2024-01-01T00:00:00Z\n`,
    );
  });
});

describe('unknown images', () => {
  it('inspect prints [] and one line naming the image, exit 1', () => {
    const r = kilnAt(root, ['inspect', 'nothere']);
    expect(r.status).toBe(1);
    expect(r.stdout).toBe('[]\n');
    expect(r.stderr).toBe('kiln: inspect: No such image: nothere\n');
  });

  it('history, tag, rmi and save say so in one line, exit 1', () => {
    for (const [args, line] of [
      [['history', 'nothere'], 'kiln: history: No such image: nothere:latest'],
      [['tag', 'nothere', 'x'], 'kiln: tag: No such image: nothere:latest'],
      [['rmi', 'nothere'], 'kiln: rmi: No such image: nothere:latest'],
      [['save', '-o', join(tmp.dir, 'x.tar'), 'nothere'], 'kiln: save: No such image: nothere:latest'],
    ] as const) {
      const r = kilnAt(root, [...args]);
      expect(r.status, args.join(' ')).toBe(1);
      expect(r.stderr, args.join(' ')).toBe(`${line}\n`);
    }
  });
});

describe('kiln tag, rmi, prune and du', () => {
  it('tag adds a name to the same image', () => {
    const r = kilnAt(root, ['tag', BUSYBOX_IMAGE, 'mine:1']);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(kilnAt(root, ['images', '--format', '{{.Repository}}:{{.Tag}} {{.ID}}']).stdout).toBe(
      `kiln-test/busybox:latest ${id.slice(7, 19)}\nmine:1 ${id.slice(7, 19)}\n`,
    );
    const bad = kilnAt(root, ['tag', BUSYBOX_IMAGE, 'Bad:Name']);
    expect(bad.status).toBe(1);
    expect(bad.stderr).toMatch(/^kiln: invalid reference "Bad:Name": repository name must be lowercase/);
  });

  it('rmi by ID refuses an image with several names, unless forced', async () => {
    const before = await storeState(root);
    const r = kilnAt(root, ['rmi', id.slice(7, 19)]);
    expect(r.status).toBe(1);
    expect(r.stderr).toBe(
      `kiln: conflict: unable to delete ${id.slice(7, 19)} (must be forced) - image is referenced in multiple repositories (hint: remove it by name, or with -f to remove every name)\n`,
    );
    expect(await storeState(root)).toEqual(before);
  });

  it('rmi by name untags; the image stays while another name remains', () => {
    const r = kilnAt(root, ['rmi', 'mine:1']);
    expect(r.status).toBe(0);
    expect(r.stdout).toBe('Untagged: mine:1\n');
    expect(kilnAt(root, ['images', '-q']).stdout).toBe(`${id.slice(7, 19)}\n`);
  });

  it('prune removes dangling images and reports the space reclaimed', () => {
    // A second import with another message: the same layer, a new config, no name.
    const r = kilnAt(root, ['import', '-m', 'second', tar], { env: busyboxImportEnv() });
    expect(r.status).toBe(0);
    const dangling = r.stdout.trim();
    expect(dangling).not.toBe(id);
    const list = kilnAt(root, ['images', '--format', '{{.Repository}} {{.Tag}} {{.ID}}']).stdout.split('\n');
    expect(list).toContain(`<none> <none> ${dangling.slice(7, 19)}`);
    expect(kilnAt(root, ['images', '-q', '-f', 'dangling=true']).stdout).toBe(`${dangling.slice(7, 19)}\n`);

    const declined = kilnAt(root, ['prune'], { input: 'n\n' });
    expect(declined.status).toBe(1);
    expect(declined.stdout).toContain('WARNING! This will remove all dangling images.\nAre you sure you want to continue? [y/N] ');
    expect(declined.stderr).toBe('kiln: image prune has been cancelled\n');

    const p = kilnAt(root, ['prune'], { input: 'y\n' });
    expect(p.status).toBe(0);
    expect(p.stdout).toMatch(new RegExp(`Deleted Images:\ndeleted: ${dangling}\n\nTotal reclaimed space: \\d+(\\.\\d+)?k?B\n$`));
    expect(kilnAt(root, ['images', '-q']).stdout).toBe(`${id.slice(7, 19)}\n`);
    expect(kilnAt(root, ['prune', '-f']).stdout).toBe('Total reclaimed space: 0B\n');
  });

  it('du reports images, containers, volumes, snapshots, build cache and temp files', () => {
    const r = kilnAt(root, ['du']);
    expect(r.status).toBe(0);
    const lines = r.stdout.trim().split('\n');
    expect(lines[0]).toMatch(/^TYPE +TOTAL +ACTIVE +SIZE +RECLAIMABLE$/);
    expect(lines.map((l) => l.split(/ {2,}/)[0])).toEqual(['TYPE', 'Images', 'Containers', 'Local Volumes', 'Snapshots', 'Build Cache', 'Temporary Files']);
    const rows = kilnAt(root, ['system', 'df', '--format', 'json']).stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, string>);
    expect(rows[0]).toMatchObject({ Type: 'Images', TotalCount: '1', Active: '0' });
    expect(rows[0]!.Size).toMatch(/MB$/);
    expect(kilnAt(root, ['du', '-v']).stdout).toContain('kiln-test/busybox');
  });

  it('rmi of the last name deletes the image and its content', async () => {
    const r = kilnAt(root, ['rmi', BUSYBOX_IMAGE]);
    expect(r.status).toBe(0);
    expect(r.stdout).toBe(`Untagged: kiln-test/busybox:latest\nDeleted: ${id}\n`);
    expect(kilnAt(root, ['images', '-q']).stdout).toBe('');
    const state = await storeState(root);
    expect(state.blobs).toEqual([]);
    expect(state.leases).toEqual([]);
  });

  it('prune -a removes every image', () => {
    expect(kilnAt(root, ['import', tar, 'a:1'], { env: busyboxImportEnv() }).status).toBe(0);
    expect(kilnAt(root, ['tag', 'a:1', 'b:2']).status).toBe(0);
    const r = kilnAt(root, ['image', 'prune', '-a', '-f']);
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`^Deleted Images:\nuntagged: a:1\nuntagged: b:2\ndeleted: ${id}\n\nTotal reclaimed space: 2\\.1\\d*MB\n$`));
    expect(kilnAt(root, ['image', 'ls', '-q']).stdout).toBe('');
  });
});

