/**
 * `kiln build`'s flags end to end: every output type in one build (each read back with an
 * independent reader), --iidfile, --metadata-file, -q, --label, --network, -f - and the
 * Dockerfile-specific .dockerignore, and ADD from a loopback HTTP server (a file checked with
 * --checksum, a git repository).
 */
import { execFileSync } from 'node:child_process';
import { promises as fsp, lstatSync, readFileSync, readlinkSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { busyboxStore, type BusyboxStore } from '../helpers/busybox.js';
import {
  LAST_MODIFIED,
  copyFixture,
  expectOk,
  inspect,
  kilnRun,
  readOciLayout,
  readTar,
  serveDirectory,
  text,
} from '../helpers/build.js';
import { skopeo } from '../helpers/store.js';
import type { RunResult } from '../helpers/kiln.js';

let base: BusyboxStore;
const ctx: Record<string, string> = {};

beforeAll(async () => {
  base = await busyboxStore();
  for (const f of ['outputs', 'ignore', 'remote']) ctx[f] = await copyFixture(f, join(base.dir, `ctx-${f}`));
}, 120_000);

afterAll(async () => {
  await base?.cleanup();
});

function build(args: string[], options: { input?: string } = {}) {
  return kilnRun(base.root, ['build', ...args], options);
}

describe('outputs, --iidfile, --metadata-file, --label', () => {
  const o = (name: string) => join(base.dir, 'out', name);
  let run: RunResult;
  let iid: string;
  let meta: Record<string, any>;
  beforeAll(async () => {
    await fsp.mkdir(join(base.dir, 'out'), { recursive: true });
    run = expectOk(
      await build([
        '--progress', 'plain',
        '-t', 'exported:1', '-t', 'example.com/team/exported:latest',
        '--label', 'version=2', '--label', 'added=by-flag',
        '--network', 'none',
        '-o', 'type=image',
        '-o', `type=oci,dest=${o('oci.tar')}`,
        '-o', `type=oci,dest=${o('oci-dir')},tar=false`,
        '-o', `type=docker,dest=${o('docker.tar')}`,
        '-o', `type=local,dest=${o('local')}`,
        '-o', `type=tar,dest=${o('rootfs.tar')}`,
        '--iidfile', o('iid'),
        '--metadata-file', o('meta.json'),
        ctx.outputs!,
      ]),
    );
    iid = readFileSync(o('iid'), 'utf8');
    meta = JSON.parse(readFileSync(o('meta.json'), 'utf8'));
  }, 120_000);

  it('type=image names the image in the store; --iidfile holds its ID', async () => {
    expect(iid).toMatch(/^sha256:[a-f0-9]{64}$/);
    for (const name of ['exported:1', 'example.com/team/exported:latest']) expect((await inspect(base.root, name)).Id).toBe(iid);
    expect(run.stderr).toContain('naming to docker.io/library/exported:1');
  });

  it('--label adds to and overrides the Dockerfile’s labels', async () => {
    expect((await inspect(base.root, 'exported:1')).Config.Labels).toEqual({ version: '2', keep: 'me', added: 'by-flag' });
  });

  it('--network none leaves RUN only the loopback interface', async () => {
    const rootfs = await readTar(o('rootfs.tar'));
    expect(text(rootfs, 'interfaces.txt')).toBe('lo\n');
  });

  it('--metadata-file has buildx’s keys for the image it made', async () => {
    const oci = await readOciLayout(o('oci-dir'));
    expect(meta['containerimage.config.digest']).toBe(iid);
    expect(meta['containerimage.digest']).toMatch(/^sha256:[a-f0-9]{64}$/);
    expect(meta['containerimage.descriptor']).toMatchObject({ mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: meta['containerimage.digest'] });
    expect(meta['image.name']).toBe('docker.io/library/exported:1,example.com/team/exported:latest');
    expect(oci.manifest.config.digest).toBe(iid);
  });

  it('type=oci writes an OCI archive skopeo reads; tar=false writes the layout as a directory', async () => {
    // One index entry per name, as BuildKit's OCI exporter writes them: the full name for
    // containerd, the tag as the OCI ref name.
    const info = JSON.parse(skopeo('inspect', `oci-archive:${o('oci.tar')}:1`));
    const archived = JSON.parse(text(await readTar(o('oci.tar')), 'index.json'));
    expect(archived.manifests.map((m: { annotations: Record<string, string> }) => m.annotations)).toEqual([
      { 'io.containerd.image.name': 'docker.io/library/exported:1', 'org.opencontainers.image.ref.name': '1' },
      { 'io.containerd.image.name': 'example.com/team/exported:latest', 'org.opencontainers.image.ref.name': 'latest' },
    ]);
    expect(info.Digest).toBe(meta['containerimage.digest']);
    expect(info.Labels).toMatchObject({ version: '2', added: 'by-flag' });
    const oci = await readOciLayout(o('oci-dir'));
    expect(oci.layers).toHaveLength(3);
    expect(oci.config.config).toMatchObject({ Cmd: ['cat', '/out/hello.txt'] });
    const index = JSON.parse(readFileSync(join(o('oci-dir'), 'index.json'), 'utf8'));
    expect(index.manifests[0].digest).toBe(meta['containerimage.digest']);
  });

  it('type=docker writes a docker-archive with the tags', async () => {
    const archive = await readTar(o('docker.tar'));
    const manifest = JSON.parse(text(archive, 'manifest.json'));
    expect(manifest).toHaveLength(1);
    expect(manifest[0].RepoTags).toEqual(['exported:1', 'example.com/team/exported:latest']);
    expect(manifest[0].Layers).toHaveLength(3);
    const info = JSON.parse(skopeo('inspect', `docker-archive:${o('docker.tar')}`));
    expect(info.Labels).toMatchObject({ version: '2' });
  });

  it('type=local and type=tar hold the image’s filesystem with modes, symlinks and hardlinks', async () => {
    const local = o('local');
    expect(statSync(join(local, 'out')).mode & 0o7777).toBe(0o750);
    expect(readFileSync(join(local, 'out/hello.txt'), 'utf8')).toBe('hello\n');
    expect(lstatSync(join(local, 'out/link')).isSymbolicLink()).toBe(true);
    expect(readlinkSync(join(local, 'out/link'))).toBe('hello.txt');
    expect(statSync(join(local, 'out/hard')).ino).toBe(statSync(join(local, 'out/hello.txt')).ino);
    expect(lstatSync(join(local, 'bin/sh')).isSymbolicLink()).toBe(true);
    const rootfs = await readTar(o('rootfs.tar'));
    expect(rootfs.get('out')).toMatchObject({ type: 'directory', mode: 0o750, uid: 0, gid: 0 });
    expect(rootfs.get('out/link')).toMatchObject({ type: 'symlink', linkname: 'hello.txt' });
    expect(rootfs.get('out/hard')?.type === 'link' || rootfs.get('out/hello.txt')?.type === 'link').toBe(true);
    expect(rootfs.has('bin/busybox')).toBe(true);
  });

  it('-q prints the image ID and nothing else; a bare -o path is type=local', async () => {
    const r = await build(['-q', '--iidfile', o('iid2'), '-o', o('bare'), ctx.outputs!]);
    expect(r.status).toBe(0);
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe(`${readFileSync(o('iid2'), 'utf8')}\n`);
    expect(readFileSync(join(o('bare'), 'out/hello.txt'), 'utf8')).toBe('hello\n');
  });
});

describe('SOURCE_DATE_EPOCH', () => {
  it('gives the same image in a store that built the same steps without it as in an empty one', async () => {
    const env = { ...process.env, SOURCE_DATE_EPOCH: '1700000000' };
    expectOk(await build(['-q', ctx.outputs!]));
    const digest = async (root: string) => {
      const meta = join(root, '..', `meta-${Math.random().toString(36).slice(2)}.json`);
      expectOk(await kilnRun(root, ['build', '-q', '--metadata-file', meta, ctx.outputs!], { env }));
      return JSON.parse(readFileSync(meta, 'utf8'))['containerimage.digest'] as string;
    };
    const fresh = await busyboxStore();
    try {
      expect(await digest(base.root)).toBe(await digest(fresh.root));
    } finally {
      await fresh.cleanup();
    }
  }, 60_000);
});

describe('the Dockerfile and the context', () => {
  async function contextSent(args: string[], input?: string): Promise<string[]> {
    const tar = join(base.dir, `ctx-${Math.random().toString(36).slice(2)}.tar`);
    expectOk(await build(['-q', ...args, '-o', `type=tar,dest=${tar}`, ctx.ignore!], input !== undefined ? { input } : {}));
    return [...(await readTar(tar)).keys()].filter((k) => k.startsWith('ctx/')).map((k) => k.slice(4)).sort();
  }

  it('.dockerignore keeps files out of the context', async () => {
    expect(await contextSent([])).toEqual(['.dockerignore', 'Dockerfile', 'alt.Dockerfile', 'alt.Dockerfile.dockerignore', 'data.txt', 'keep.cfg']);
  });

  it('-f NAME uses NAME.dockerignore instead of .dockerignore', async () => {
    expect(await contextSent(['-f', join(ctx.ignore!, 'alt.Dockerfile')])).toEqual([
      '.dockerignore',
      'Dockerfile',
      'alt.Dockerfile',
      'alt.Dockerfile.dockerignore',
      'keep.cfg',
      'notes.md',
      'secret',
      'secret/key',
    ]);
  });

  it('-f - reads the Dockerfile from standard input; the context’s .dockerignore applies', async () => {
    const dockerfile = readFileSync(join(ctx.ignore!, 'alt.Dockerfile'), 'utf8');
    expect(await contextSent(['-f', '-'], dockerfile)).toEqual(['.dockerignore', 'Dockerfile', 'alt.Dockerfile', 'alt.Dockerfile.dockerignore', 'data.txt', 'keep.cfg']);
  });
});

describe('ADD from the network (fixtures/build/remote)', () => {
  const BODY = 'downloaded over http\n';
  const SUM = 'sha256:9f63d5cc0750937493c527a28ddeac70955c8bf9e535bacacb9ef36e785e82b4';
  let server: Awaited<ReturnType<typeof serveDirectory>>;
  let commit: string;
  beforeAll(async () => {
    const www = join(base.dir, 'www');
    await fsp.mkdir(www, { recursive: true });
    await fsp.writeFile(join(www, 'remote.txt'), BODY);
    commit = makeGitRepo(join(base.dir, 'git-work'), join(www, 'repo.git'));
    server = await serveDirectory(www);
  });
  afterAll(async () => {
    await server?.close();
  });

  it('downloads a file checked against --checksum (mode 0600, the server’s time) and clones a repository', async () => {
    const tar = join(base.dir, 'remote.tar');
    expectOk(
      await build([
        '-q',
        '--build-arg', `URL=${server.url}/remote.txt`,
        '--build-arg', `SUM=${SUM}`,
        '--build-arg', `GIT=${server.url}/repo.git#main`,
        '-o', `type=tar,dest=${tar}`,
        ctx.remote!,
      ]),
    );
    const rootfs = await readTar(tar);
    expect(rootfs.get('downloads/remote.txt')).toMatchObject({ type: 'file', mode: 0o600, uid: 0, gid: 0, mtime: LAST_MODIFIED });
    expect(text(rootfs, 'downloads/remote.txt')).toBe(BODY);
    expect(text(rootfs, 'downloads/renamed.txt')).toBe(BODY);
    expect(text(rootfs, 'src/README')).toBe('from git\n');
    expect(text(rootfs, 'src/sub/file')).toBe('x\n');
    expect(rootfs.get('src/README')).toMatchObject({ mode: 0o644, uid: 0, gid: 0 });
    expect([...rootfs.keys()].some((k: string) => k.startsWith('src/.git'))).toBe(false);
    expect(text(rootfs, 'src-with-git/.git/HEAD').trim()).toBe(commit);
    expect(server.requests).toContain('/remote.txt');
  }, 60_000);

  it('a --checksum that does not match fails, naming both digests and the line', async () => {
    const bad = `sha256:${'0'.repeat(64)}`;
    const r = await build(['-q', '--build-arg', `URL=${server.url}/remote.txt`, '--build-arg', `SUM=${bad}`, '--build-arg', `GIT=${server.url}/repo.git`, ctx.remote!]);
    expect(r.status).toBe(1);
    const lines = r.stderr.trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/Dockerfile:7: .*mismatch.*sha256:9f63d5cc.*sha256:0000000000/);
  });

  it('a rebuild asks whether the file changed: unchanged, the step is cached and nothing is downloaded', async () => {
    const www = join(base.dir, 'www');
    await fsp.writeFile(join(www, 'asked.txt'), 'first version\n');
    const dir = join(base.dir, 'ctx-asked');
    await fsp.mkdir(dir, { recursive: true });
    await fsp.writeFile(join(dir, 'Dockerfile'), `FROM kiln-test/busybox:latest\nADD ${server.url}/asked.txt /downloads/\nRUN cat /downloads/asked.txt > /seen.txt\n`);
    const asked = () => server.log.filter((l) => l.path === '/asked.txt');
    const plain = (args: string[]) => build(['--progress', 'plain', '-t', 'asked', ...args, dir]);

    expectOk(await plain([]));
    expect(asked()).toEqual([{ path: '/asked.txt', status: 200, conditional: false }]);
    const again = expectOk(await plain([]));
    expect(asked()[1]).toEqual({ path: '/asked.txt', status: 304, conditional: true });
    expect(again.stderr.match(/^#\d+ CACHED$/gm)).toHaveLength(2);

    await fsp.writeFile(join(www, 'asked.txt'), 'second version\n');
    const changed = expectOk(await plain([]));
    expect(asked()[2]).toEqual({ path: '/asked.txt', status: 200, conditional: true });
    expect(changed.stderr).not.toMatch(/^#\d+ CACHED$/m);
    const r = await kilnRun(base.root, ['run', '--rm', 'asked', 'cat', '/seen.txt']);
    expect(r.stdout).toBe('second version\n');
  }, 60_000);

  it('a URL with --checksum is keyed by the checksum: a rebuild asks the server nothing', async () => {
    const dir = join(base.dir, 'ctx-summed');
    await fsp.mkdir(dir, { recursive: true });
    await fsp.writeFile(join(dir, 'Dockerfile'), `FROM kiln-test/busybox:latest\nADD --checksum=${SUM} ${server.url}/remote.txt /summed.txt\n`);
    expectOk(await build(['-q', dir]));
    const before = server.requests.length;
    const again = expectOk(await build(['--progress', 'plain', dir]));
    expect(again.stderr).toMatch(/^#\d+ CACHED$/m);
    expect(server.requests.length).toBe(before);
  });

  it('a git source is keyed by the commit its remote names: a rebuild clones nothing until the branch moves', async () => {
    const www = join(base.dir, 'www');
    const work = join(base.dir, 'git-moving');
    makeGitRepo(work, join(www, 'moving.git'));
    const dir = join(base.dir, 'ctx-git');
    await fsp.mkdir(dir, { recursive: true });
    await fsp.writeFile(join(dir, 'Dockerfile'), `FROM kiln-test/busybox:latest\nADD ${server.url}/moving.git#main /src/\nRUN cat /src/README > /seen.txt\n`);
    const plain = () => build(['--progress', 'plain', '-t', 'moving', dir]);
    const objects = (from: number) => server.requests.slice(from).filter((p) => p.startsWith('/moving.git/objects/'));

    expectOk(await plain());
    const before = server.requests.length;
    const again = expectOk(await plain());
    expect(again.stderr.match(/^#\d+ CACHED$/gm)).toHaveLength(2);
    // Only the refs were read (git ls-remote), no object.
    expect(server.requests.length).toBeGreaterThan(before);
    expect(objects(before)).toEqual([]);

    commitAndPush(work, join(www, 'moving.git'), 'README', 'moved on\n');
    const moved = expectOk(await plain());
    expect(moved.stderr).not.toMatch(/^#\d+ CACHED$/m);
    const r = await kilnRun(base.root, ['run', '--rm', 'moving', 'cat', '/seen.txt']);
    expect(r.stdout).toBe('moved on\n');
  }, 60_000);
});

/** A one-commit repository at `work`, published as a bare repository fetchable over dumb HTTP. */
function makeGitRepo(work: string, bare: string): string {
  const git = gitAs(work);
  execFileSync('mkdir', ['-p', join(work, 'sub')]);
  git(['init', '-q', '-b', 'main', work]);
  execFileSync('sh', ['-c', `printf 'from git\\n' > README && printf 'x\\n' > sub/file`], { cwd: work });
  git(['add', '.'], work);
  git(['commit', '-q', '-m', 'init'], work);
  git(['clone', '-q', '--bare', work, bare]);
  git(['update-server-info'], bare);
  return git(['rev-parse', 'HEAD'], work).trim();
}

/** A new commit on main in `work`, pushed to `bare` (served over dumb http). */
function commitAndPush(work: string, bare: string, file: string, content: string): string {
  const git = gitAs(work);
  writeFileSync(join(work, file), content);
  git(['add', '.'], work);
  git(['commit', '-q', '-m', `change ${file}`], work);
  git(['push', '-q', bare, 'main'], work);
  git(['update-server-info'], bare);
  return git(['rev-parse', 'HEAD'], work).trim();
}

/** git with a fixed identity and time, and no system or user configuration. */
function gitAs(work: string): (args: string[], cwd?: string) => string {
  const env = {
    ...process.env,
    HOME: work,
    GIT_CONFIG_NOSYSTEM: '1',
    GIT_AUTHOR_NAME: 'kiln',
    GIT_AUTHOR_EMAIL: 'kiln@example.com',
    GIT_COMMITTER_NAME: 'kiln',
    GIT_COMMITTER_EMAIL: 'kiln@example.com',
    GIT_AUTHOR_DATE: '2024-01-03T00:00:00Z',
    GIT_COMMITTER_DATE: '2024-01-03T00:00:00Z',
  };
  const git = (args: string[], cwd?: string) => {
    try {
      return execFileSync('git', args, { env, cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new Error('git is not installed; ADD of a git repository needs it: apt-get install -y git');
      throw err;
    }
  };
  return git;
}
