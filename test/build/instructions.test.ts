/**
 * Every Dockerfile instruction, end to end FROM the busybox base: the fixtures in fixtures/build
 * (config, files, run) are built once, side by side, and the results are read back as a user would
 * look at them (`kiln inspect`, the image's layers and history, its filesystem as a tar) and held
 * against what BuildKit gives for the same Dockerfile.
 */
import { promises as fsp, lstatSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { busyboxStore, type BusyboxStore } from '../helpers/busybox.js';
import {
  copyFixture,
  expectOk,
  hostArch,
  inParallel,
  inspect,
  kilnRun,
  readOciLayout,
  readTar,
  text,
  type OciImage,
  type TarEntry,
} from '../helpers/build.js';
import type { RunResult } from '../helpers/kiln.js';

const TOKEN = 's3cr3t-token-value-7f1c';
const API_KEY = 's3cr3t-env-value-52ab';

let base: BusyboxStore;
const ctx: Record<string, string> = {};
const out: Record<string, string> = {};
const runs: Record<string, RunResult> = {};

function build(name: string, args: string[], env: NodeJS.ProcessEnv = process.env): () => Promise<void> {
  return async () => {
    runs[name] = expectOk(await kilnRun(base.root, ['build', '--progress', 'plain', ...args], { env }), `build ${name}`);
  };
}

beforeAll(async () => {
  base = await busyboxStore();
  for (const f of ['config', 'files', 'run']) ctx[f] = await copyFixture(f, join(base.dir, `ctx-${f}`));
  for (const o of ['cfg-shell.tar', 'files-oci', 'files.tar', 'run.tar', 'run-oci', 'token']) out[o] = join(base.dir, o);
  await fsp.writeFile(out.token!, TOKEN);
  const secretEnv = { ...process.env, API_KEY };
  const secrets = ['--secret', `id=token,src=${out.token}`, '--secret', 'id=apikey,env=API_KEY'];
  await inParallel(3, [
    build('cfg-base', ['--target', 'base', '-t', 'cfg-base', '--build-arg', 'GREETING=bonjour', ctx.config!]),
    build('cfg-entry', ['--target', 'entry', '-t', 'cfg-entry', ctx.config!]),
    build('cfg-shell', ['--target', 'shell', '-t', 'cfg-shell', '-o', 'type=image', '-o', `type=tar,dest=${out['cfg-shell.tar']}`, ctx.config!]),
    build('files', ['-t', 'files', '-o', 'type=image', '-o', `type=oci,dest=${out['files-oci']},tar=false`, '-o', `type=tar,dest=${out['files.tar']}`, ctx.files!]),
    build('run', ['-t', 'run', ...secrets, '-o', 'type=image', '-o', `type=tar,dest=${out['run.tar']}`, '-o', `type=oci,dest=${out['run-oci']},tar=false`, ctx.run!], secretEnv),
  ]);
}, 300_000);

afterAll(async () => {
  await base?.cleanup();
});

/** History entries the build added on top of the base image's. */
function ownHistory(oci: OciImage, baseEntries = 1) {
  return oci.config.history.slice(baseEntries).map((h) => ({ createdBy: h.created_by ?? '', layer: !h.empty_layer }));
}

/** The layer a history entry made (history entries with a layer map onto the layers in order). */
function layerOf(oci: OciImage, createdBy: string): Map<string, TarEntry> {
  let n = 0;
  for (const h of oci.config.history) {
    if (h.empty_layer) continue;
    if (h.created_by === createdBy) return oci.layers[n]!;
    n++;
  }
  throw new Error(`no layer made by ${createdBy}`);
}

describe('metadata instructions (fixtures/build/config)', () => {
  it('sets every config field the Dockerfile names, as BuildKit would', async () => {
    const img = await inspect(base.root, 'cfg-base');
    expect(img.Author).toBe('Kiln Tests <kiln@example.com>');
    expect(img.Config).toEqual({
      User: 'nobody',
      ExposedPorts: { '53/udp': {}, '80/tcp': {}, '8000/tcp': {}, '8001/tcp': {} },
      Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', 'APP_HOME=/srv/app', 'MODE=a b', 'LEGACY=legacy value'],
      Entrypoint: ['/bin/echo'],
      // CMD came before ENTRYPOINT in the same stage: it stays.
      Cmd: ['serve'],
      Volumes: { '/data': {}, '/cache': {}, '/logs': {} },
      WorkingDir: '/srv/app/sub',
      Labels: { 'org.example.title': 'config fixture', version: '1' },
      StopSignal: 'SIGTERM',
      ArgsEscaped: true,
      Healthcheck: { Test: ['CMD', '/bin/true'], Interval: 30e9, Timeout: 5e9, StartPeriod: 10e9, Retries: 3 },
      OnBuild: ['RUN echo "trigger saw $LOCAL" > /tmp/onbuild.txt'],
    });
  });

  it('writes BuildKit history: one entry per instruction, layers only for RUN, COPY, ADD and WORKDIR', async () => {
    const out = await fsp.mkdtemp(join(base.dir, 'oci-'));
    expectOk(await kilnRun(base.root, ['build', '-q', '--target', 'base', '--build-arg', 'GREETING=bonjour', '-o', `type=oci,dest=${out},tar=false`, ctx.config!]));
    const oci = await readOciLayout(out);
    const arch = hostArch();
    const args = `|4 GREETING=bonjour TARGETARCH=${arch} TARGETPLATFORM=linux/${arch} LOCAL=local-bonjour`;
    expect(ownHistory(oci)).toEqual([
      { createdBy: 'ARG GREETING=bonjour', layer: false },
      { createdBy: `ARG TARGETARCH=${arch}`, layer: false },
      { createdBy: `ARG TARGETPLATFORM=linux/${arch}`, layer: false },
      { createdBy: 'ARG LOCAL=local-bonjour', layer: false },
      { createdBy: 'ENV APP_HOME=/srv/app MODE=a b', layer: false },
      { createdBy: 'ENV LEGACY=legacy value', layer: false },
      { createdBy: 'LABEL org.example.title=config fixture version=1', layer: false },
      { createdBy: 'MAINTAINER Kiln Tests <kiln@example.com>', layer: false },
      { createdBy: 'EXPOSE [53/udp 80/tcp 8000/tcp 8001/tcp]', layer: false },
      { createdBy: 'VOLUME [/data]', layer: false },
      { createdBy: 'VOLUME [/cache /logs]', layer: false },
      { createdBy: 'STOPSIGNAL SIGTERM', layer: false },
      { createdBy: 'HEALTHCHECK {Test:[CMD /bin/true] Interval:30s Timeout:5s StartPeriod:10s StartInterval:0s Retries:3}', layer: false },
      { createdBy: 'WORKDIR /srv/app', layer: true },
      { createdBy: 'WORKDIR /srv/app/sub', layer: true },
      { createdBy: `RUN ${args} /bin/sh -c echo "$GREETING $LOCAL $TARGETARCH $TARGETPLATFORM $(pwd)" > args.txt # buildkit`, layer: true },
      { createdBy: 'CMD ["serve"]', layer: false },
      { createdBy: 'ENTRYPOINT ["/bin/echo"]', layer: false },
      { createdBy: 'USER nobody', layer: false },
    ]);
    expect(oci.config.rootfs.diff_ids).toHaveLength(4);
    expect(oci.config.history.every((h) => h.comment === 'buildkit.dockerfile.v0' || h === oci.config.history[0])).toBe(true);
    // Build args, global ARG defaults and the platform args reach RUN; WORKDIR made the directories.
    const files = new Map([...oci.layers[3]!]);
    expect(text(files, 'srv/app/sub/args.txt')).toBe(`bonjour local-bonjour ${arch} linux/${arch} /srv/app/sub\n`);
    expect(oci.layers[1]!.get('srv/app')).toMatchObject({ type: 'directory', mode: 0o755, uid: 0, gid: 0 });
    // The base image's own fields that are not BuildKit's (`comment` of an import) do not carry over.
    expect(oci.config).not.toHaveProperty('comment');
  });

  it('an ENTRYPOINT in a stage built on another resets the CMD it inherited; triggers run, then are gone', async () => {
    const img = await inspect(base.root, 'cfg-entry');
    expect(img.Config.Entrypoint).toEqual(['/bin/sh', '-c']);
    expect(img.Config.Cmd ?? null).toBeNull();
    expect(img.Config.Healthcheck).toEqual({ Test: ['NONE'] });
    expect(img.Config.OnBuild ?? null).toBeNull();
    expect(img.Config.User).toBe('nobody');
    expect(runs['cfg-entry']!.stderr).toMatch(/\[entry 1\/1\] ONBUILD RUN echo "trigger saw \$LOCAL" > \/tmp\/onbuild.txt\n/);
  });

  it('SHELL changes shell-form CMD and RUN; a stage keeps its base stage’s ARGs and ENV', async () => {
    const img = await inspect(base.root, 'cfg-shell');
    expect(img.Config.Shell).toEqual(['/bin/sh', '-ec']);
    expect(img.Config.Cmd).toEqual(['/bin/sh', '-ec', 'echo $MODE']);
    expect(img.Config.Entrypoint).toEqual(['/bin/echo']);
    expect(img.Config.User).toBe('root');
    expect(img.Config.Env).toContain('MODE=changed');
    const rootfs = await readTar(out['cfg-shell.tar']!);
    expect(text(rootfs, 'inherited-arg.txt')).toBe('local-hello\n');
    expect(text(rootfs, 'inherited-env.txt')).toBe('/srv/app\n');
    // The base stage's ONBUILD trigger ran first, as the base stage's USER.
    expect(rootfs.get('tmp/onbuild.txt')).toMatchObject({ uid: 65534, gid: 65534 });
    expect(text(rootfs, 'tmp/onbuild.txt')).toBe('trigger saw local-hello\n');
    const history = (await kilnRun(base.root, ['history', '--no-trunc', '--format', '{{.CreatedBy}}', 'cfg-shell'])).stdout.split('\n');
    const arch = hostArch();
    expect(history).toContain(
      `RUN |4 GREETING=hello TARGETARCH=${arch} TARGETPLATFORM=linux/${arch} LOCAL=local-hello /bin/sh -ec echo "$LOCAL" > /inherited-arg.txt && echo "$APP_HOME" > /inherited-env.txt # buildkit`,
    );
    expect(history).toContain('SHELL [/bin/sh -ec]');
    expect(history).toContain('CMD ["/bin/sh" "-ec" "echo $MODE"]');
  });
});

describe('COPY and ADD (fixtures/build/files)', () => {
  let rootfs: Map<string, TarEntry>;
  let oci: OciImage;
  beforeAll(async () => {
    rootfs = await readTar(out['files.tar']!);
    oci = await readOciLayout(out['files-oci']!);
  });

  it('copies directory contents, wildcards, and follows a symlink named as the source', () => {
    for (const d of ['dest/contents', 'dest/whole']) {
      expect(text(rootfs, `${d}/a.txt`)).toBe('alpha\n');
      expect(rootfs.get(`${d}/link`)).toMatchObject({ type: 'symlink', linkname: 'a.txt' });
      expect(text(rootfs, `${d}/sub/c.txt`)).toBe('charlie\n');
      expect(rootfs.get(`${d}/a.txt`)).toMatchObject({ mode: 0o644, uid: 0, gid: 0 });
    }
    expect(rootfs.has('dest/whole/app')).toBe(false);
    expect(rootfs.get('dest/followed.txt')).toMatchObject({ type: 'file', mode: 0o644 });
    expect(text(rootfs, 'dest/followed.txt')).toBe('alpha\n');
    const glob = layerOf(oci, 'COPY app/*.txt /dest/glob/ # buildkit');
    expect([...glob.keys()].filter((k) => k.startsWith('dest/glob/')).sort()).toEqual(['dest/glob/a.txt', 'dest/glob/b.txt']);
  });

  it('--chown by name (from the image’s /etc/passwd and /etc/group) and by id, --chmod octal and symbolic', () => {
    expect(rootfs.get('dest/owned-by-name.txt')).toMatchObject({ uid: 1234, gid: 2345, mode: 0o644 });
    expect(rootfs.get('dest/owned-by-id.txt')).toMatchObject({ uid: 1000, gid: 1001, mode: 0o640 });
    expect(rootfs.get('dest/symbolic-mode.txt')).toMatchObject({ uid: 0, gid: 0, mode: 0o755 });
  });

  it('--link, --exclude, --parents (with and without a /./ pivot), relative destinations', () => {
    expect(text(rootfs, 'dest/linked/c.txt')).toBe('charlie\n');
    expect([...rootfs.keys()].filter((k) => k.startsWith('dest/excluded/')).sort()).toEqual(['dest/excluded/a.txt', 'dest/excluded/b.txt', 'dest/excluded/link']);
    expect(text(rootfs, 'dest/parents/src/pkg/two.go')).toBe('package pkg\n');
    expect(rootfs.has('dest/parents/src/main.go')).toBe(false);
    expect(text(rootfs, 'dest/pivot/pkg/two.go')).toBe('package pkg\n');
    expect(text(rootfs, 'dest/relative/a.txt')).toBe('alpha\n');
    expect(text(rootfs, 'dest/relative/renamed.txt')).toBe('bravo\n');
  });

  it('COPY . sends the context as .dockerignore leaves it', () => {
    const sent = [...rootfs.keys()].filter((k) => k.startsWith('dest/context/')).map((k) => k.slice('dest/context/'.length));
    expect(sent).toEqual(expect.arrayContaining(['.dockerignore', 'Dockerfile', 'app/a.txt', 'src/pkg/two.go', 'bundle.tar.gz']));
    expect(sent.filter((p) => p.endsWith('.secret') || p.startsWith('ignored'))).toEqual([]);
  });

  it('heredocs: expanded unless the delimiter is quoted, <<- strips tabs', () => {
    expect(text(rootfs, 'dest/heredoc.txt')).toBe('greeting: hi\n');
    expect(text(rootfs, 'dest/heredocs/EOF')).toBe('literal $GREETING\n');
    expect(text(rootfs, 'dest/heredocs/EOT')).toBe('tab stripped\n');
    expect(rootfs.get('dest/heredoc.txt')).toMatchObject({ mode: 0o644, uid: 0 });
  });

  it('ADD unpacks a local archive with its owners and modes; --unpack=false and COPY do not', () => {
    expect(rootfs.get('dest/unpacked/bundle/bin/tool')).toMatchObject({ type: 'file', mode: 0o755, uid: 1000, gid: 1000 });
    expect(text(rootfs, 'dest/unpacked/bundle/readme.txt')).toBe('unpacked by ADD\n');
    expect(rootfs.get('dest/packed/bundle.tar.gz')).toMatchObject({ type: 'file', mode: 0o644 });
    expect(rootfs.get('dest/copied/bundle.tar.gz')).toMatchObject({ type: 'file', mode: 0o644 });
    expect(rootfs.has('dest/packed/bundle')).toBe(false);
  });

  it('COPY --from a stage by name and index keeps symlinks and hardlinks; --from an image', () => {
    expect(text(rootfs, 'from-name/artifact')).toBe('built\n');
    expect(rootfs.get('from-name/symlink')).toMatchObject({ type: 'symlink', linkname: 'artifact' });
    expect(rootfs.get('from-name/hardlink')).toMatchObject({ type: 'link', linkname: 'from-name/artifact' });
    expect(text(rootfs, 'from-name/dir/nested.txt')).toBe('nested\n');
    expect(text(rootfs, 'from-index/artifact')).toBe('built\n');
    expect(text(rootfs, 'from-image/group')).toBe('root:x:0:\nnobody:x:65534:\n');
  });

  it('a RUN that deletes files leaves whiteouts in its layer, and the files are gone', () => {
    const last = oci.layers[oci.layers.length - 1]!;
    expect(last.get('dest/contents/.wh.b.txt')).toMatchObject({ type: 'file' });
    expect(last.get('dest/.wh.glob')).toMatchObject({ type: 'file' });
    expect(rootfs.has('dest/contents/b.txt')).toBe(false);
    expect(rootfs.has('dest/glob')).toBe(false);
    expect(rootfs.get('dest/contents/new.txt')).toMatchObject({ type: 'file', data: Buffer.alloc(0) });
  });

  it('history names COPY and ADD as BuildKit does (no --from, --link or --exclude)', () => {
    const own = ownHistory(oci).map((h) => h.createdBy);
    expect(own).toEqual(
      expect.arrayContaining([
        'COPY app/ /dest/contents/ # buildkit',
        'COPY --chown=app:appgrp app/a.txt /dest/owned-by-name.txt # buildkit',
        'COPY --chown=1000:1001 --chmod=0640 app/b.txt /dest/owned-by-id.txt # buildkit',
        'COPY app/sub /dest/linked/ # buildkit',
        'COPY app /dest/excluded/ # buildkit',
        'COPY --parents src/pkg/two.go /dest/parents/ # buildkit',
        'WORKDIR /dest/relative',
        'COPY <<EOF /dest/heredoc.txt # buildkit',
        'COPY <<EOF <<EOT /dest/heredocs/ # buildkit',
        'ADD bundle.tar.gz /dest/unpacked/ # buildkit',
        'COPY /out/ /from-name/ # buildkit',
        'COPY /etc/group /from-image/group # buildkit',
      ]),
    );
    expect(oci.manifest.annotations?.['org.opencontainers.image.base.name']).toBe('docker.io/kiln-test/busybox:latest');
  });
});

describe('RUN (fixtures/build/run)', () => {
  let rootfs: Map<string, TarEntry>;
  beforeAll(async () => {
    rootfs = await readTar(out['run.tar']!);
  });

  it('runs shell form, exec form and heredocs (whole script, #! script, heredoc inside a command)', async () => {
    expect(text(rootfs, 'shell.txt')).toBe('shell-form\n');
    expect(text(rootfs, 'hostname.txt')).toBe('buildkitsandbox\n');
    expect(text(rootfs, 'exec.txt')).toBe('exec-form\n');
    expect(text(rootfs, 'heredoc.txt')).toBe('heredoc-line1\nheredoc-line2\n');
    expect(text(rootfs, 'shebang.txt')).toBe('shebang script\n');
    expect(text(rootfs, 'complex.txt')).toBe('home is /root\n');
    const history = (await kilnRun(base.root, ['history', '--no-trunc', '--format', '{{.CreatedBy}}', 'run'])).stdout;
    expect(history).toContain('RUN /bin/sh -c echo shell-form > /shell.txt && hostname > /hostname.txt # buildkit');
    expect(history).toContain('RUN /bin/sh -c echo exec-form > /exec.txt # buildkit');
    expect(history).toContain('RUN /bin/sh -c /dev/pipes/EOF # buildkit');
    expect(history).toContain('RUN /bin/sh -c cat <<EOF > /complex.txt\nhome is $HOME\nEOF # buildkit');
    // The script's mount point is not left behind.
    expect(rootfs.has('dev/pipes')).toBe(false);
  });

  it('bind mounts from the context and from a stage, a tmpfs, and no network with --network=none', () => {
    expect(text(rootfs, 'bound.txt')).toBe('bound from the context\n');
    expect(text(rootfs, 'from-stage.txt')).toBe('made in producer\n');
    expect(text(rootfs, 'tmpfs-type.txt')).toBe('tmpfs\n');
    expect(text(rootfs, 'net-none.txt')).toBe('lo\n');
    for (const mountPoint of ['mnt/data', 'mnt/made', 'scratch', 'run/secrets', 'var/cache/fixture']) expect(rootfs.has(mountPoint)).toBe(false);
  });

  it('ARG and ENV values reach RUN whatever their names', () => {
    expect(text(rootfs, 'env-names.txt')).toBe('world yes 1.0\n');
  });

  it('USER applies to RUN, with the primary group among the groups, as in BuildKit', () => {
    expect(text(rootfs, 'tmp/id.txt')).toBe('uid=65534(nobody) gid=65534(nobody) groups=65534(nobody)\n');
    expect(rootfs.get('tmp/id.txt')).toMatchObject({ uid: 65534, gid: 65534 });
  });

  it('secrets reach the step, as a file and as an environment variable, and nothing else', async () => {
    expect(text(rootfs, 'secret-file-len.txt')).toBe(`${TOKEN.length}\n`);
    expect(text(rootfs, 'secret-env-len.txt')).toBe(`${API_KEY.length}\n`);
    const oci = await readOciLayout(out['run-oci']!);
    const places: Array<[string, string]> = [
      ['build output', runs.run!.stderr + runs.run!.stdout],
      ['history', JSON.stringify(oci.config)],
      ...oci.layers.flatMap((l, i) => [...l.values()].map((e): [string, string] => [`layer ${i} ${e.name}`, e.data.toString('latin1')])),
      ...storeFiles(base.root).map((f): [string, string] => [f, readFileSync(f).toString('latin1')]),
    ];
    expect(runs.run!.stderr).toContain('api key: ****');
    for (const [where, content] of places) {
      expect(content.includes(TOKEN), `the file secret is in ${where}`).toBe(false);
      expect(content.includes(API_KEY), `the env secret is in ${where}`).toBe(false);
    }
  });

  it('a cache mount keeps its content across builds and never enters a layer', async () => {
    expect(text(rootfs, 'cache-runs.txt')).toBe('1\n');
    const again = join(base.dir, 'run-again.tar');
    const env = { ...process.env, API_KEY };
    expectOk(
      await kilnRun(base.root, ['build', '-q', '--no-cache', '--secret', `id=token,src=${out.token}`, '--secret', 'id=apikey,env=API_KEY', '-o', `type=tar,dest=${again}`, ctx.run!], { env }),
    );
    const second = await readTar(again);
    expect(text(second, 'cache-runs.txt')).toBe('2\n');
    expect([...second.keys()].filter((k) => k.startsWith('var/cache/fixture'))).toEqual([]);
  }, 60_000);
});

/** Every regular file under a directory (the store: blobs, cache records, snapshots, mounts). */
function storeFiles(dir: string): string[] {
  const files: string[] = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    const st = lstatSync(p, { throwIfNoEntry: false });
    if (!st) continue;
    if (st.isDirectory()) files.push(...storeFiles(p));
    else if (st.isFile() && st.size < 64 << 20) files.push(p);
  }
  return files;
}
