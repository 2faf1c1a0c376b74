/**
 * HTTPS with a registry CA from certs.d: a TLS-only registry endpoint on loopback is trusted when
 * `$XDG_CONFIG_HOME/containers/certs.d/<host:port>/ca.crt` holds its CA, and refused otherwise
 * (plain HTTP is no way around a TLS-only server).
 */
import { execFileSync } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Registries, TlsError } from '../../src/registry/index.js';
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
});
