/**
 * HTTPS with a registry CA from certs.d: a TLS-only registry endpoint on loopback is trusted when
 * `$XDG_CONFIG_HOME/containers/certs.d/<host:port>/ca.crt` holds its CA, and refused otherwise
 * (plain HTTP is no way around a TLS-only server). The CAs of NODE_EXTRA_CA_CERTS are trusted too,
 * also when the `kiln` command has handed them to kiln as KILN_EXTRA_CA_CERTS.
 */
import { execFile, execFileSync } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Registries, TlsError } from '../../src/registry/index.js';
import { REPO_ROOT } from '../conformance/harness.js';
import { tempDir } from './util.js';

describe('TLS registries', () => {
  let dir: string;
  let server: Server;
  let host: string;
  let ca: string;

  beforeAll(async () => {
    dir = await tempDir('kiln-tls-');
    const run = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
    run('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'ca.key', '-out', 'ca.crt', '-days', '2', '-subj', '/CN=kiln test CA');
    run('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'srv.key', '-out', 'srv.csr', '-subj', '/CN=127.0.0.1');
    await fsp.writeFile(join(dir, 'san.ext'), 'subjectAltName=IP:127.0.0.1\n');
    run('x509', '-req', '-in', 'srv.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'srv.crt', '-days', '2', '-extfile', 'san.ext');
    ca = await fsp.readFile(join(dir, 'ca.crt'), 'utf8');
    server = createServer({ key: await fsp.readFile(join(dir, 'srv.key')), cert: await fsp.readFile(join(dir, 'srv.crt')) }, (req, res) => {
      res.writeHead(req.url === '/v2/' ? 200 : 404, { 'content-type': 'application/json' }).end('{}');
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    host = `127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    await new Promise((r) => server?.close(r));
    if (dir) await fsp.rm(dir, { recursive: true, force: true });
  });

  it('trusts the CA in certs.d/<host>/ca.crt', async () => {
    const xdg = join(dir, 'config');
    await fsp.mkdir(join(xdg, 'containers', 'certs.d', host), { recursive: true });
    await fsp.writeFile(join(xdg, 'containers', 'certs.d', host, 'ca.crt'), ca);
    const registries = new Registries({ env: { XDG_CONFIG_HOME: xdg, HOME: dir } });
    try {
      expect((await registries.get(host).baseURL()).protocol).toBe('https:');
    } finally {
      await registries.close();
    }
  });

  it('refuses a server it cannot verify', async () => {
    const registries = new Registries({ env: { XDG_CONFIG_HOME: join(dir, 'none'), HOME: dir }, retry: { attempts: 1 } });
    try {
      const err = await registries.get(host).baseURL().catch((e: unknown) => e);
      expect(err).toBeInstanceOf(TlsError);
      expect((err as TlsError).describe()).toMatch(new RegExp(`^${host}: TLS handshake failed: .*certs\\.d/${host}/ca\\.crt`));
    } finally {
      await registries.close();
    }
  });

  it('trusts the CAs of NODE_EXTRA_CA_CERTS, and of KILN_EXTRA_CA_CERTS that bin/kiln hands them over as', async () => {
    for (const variable of ['NODE_EXTRA_CA_CERTS', 'KILN_EXTRA_CA_CERTS']) {
      const registries = new Registries({ env: { XDG_CONFIG_HOME: join(dir, 'none'), HOME: dir, [variable]: join(dir, 'ca.crt') } });
      try {
        expect((await registries.get(host).baseURL()).protocol, variable).toBe('https:');
      } finally {
        await registries.close();
      }
    }
  });

  it('the kiln command reaches a registry whose CA only NODE_EXTRA_CA_CERTS names', async () => {
    // Asynchronously: the server runs in this process.
    const pull = (env: NodeJS.ProcessEnv) =>
      new Promise<{ code: number | null; stderr: string }>((resolve) => {
        const child = execFile(join(REPO_ROOT, 'bin/kiln'), ['--root', join(dir, 'store'), 'pull', `${host}/app:1`], {
          env: { PATH: process.env.PATH, HOME: dir, XDG_CONFIG_HOME: join(dir, 'none'), ...env },
        }, (_err, _stdout, stderr) => resolve({ code: child.exitCode, stderr }));
      });
    // The server answers /v2/ and nothing else: past the handshake, the manifest is not found.
    const trusted = await pull({ NODE_EXTRA_CA_CERTS: join(dir, 'ca.crt') });
    expect(trusted.code).not.toBe(0);
    expect(trusted.stderr).not.toMatch(/TLS/);
    expect(trusted.stderr).toMatch(/not found|404/i);
    const untrusted = await pull({});
    expect(untrusted.code).not.toBe(0);
    expect(untrusted.stderr).toMatch(/TLS handshake failed/);
  });
});
