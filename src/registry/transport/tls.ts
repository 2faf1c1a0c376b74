/**
 * TLS trust for a registry: Node's bundled roots, the system bundle, the user's extra CAs, and the per-registry
 * directories docker and podman read (`certs.d/<host[:port]>/`): every `*.crt` there is a CA, and a
 * `<name>.cert` with its `<name>.key` is a client certificate.
 */
import { promises as fsp } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { rootCertificates } from 'node:tls';

export interface TlsMaterial {
  ca: string[];
  cert?: Buffer;
  key?: Buffer;
  /** Files that contributed (for diagnostics). */
  files: string[];
}

/** The certs.d roots searched, in order: containers', docker's, then the user's. */
export function certsDirs(env: NodeJS.ProcessEnv = process.env): string[] {
  const xdg = env.XDG_CONFIG_HOME || join(env.HOME || homedir(), '.config');
  return ['/etc/containers/certs.d', '/etc/docker/certs.d', join(xdg, 'containers', 'certs.d')];
}

const SYSTEM_BUNDLES = ['/etc/ssl/certs/ca-certificates.crt', '/etc/pki/tls/certs/ca-bundle.crt', '/etc/ssl/cert.pem'];

let systemBundle: Promise<string[]> | undefined;

function readSystemBundle(): Promise<string[]> {
  systemBundle ??= (async () => {
    for (const path of SYSTEM_BUNDLES) {
      try {
        return [await fsp.readFile(path, 'utf8')];
      } catch {
        // try the next location
      }
    }
    return [];
  })();
  return systemBundle;
}

/**
 * The file of extra CAs the user gave Node (`NODE_EXTRA_CA_CERTS`). kiln's launcher (bin/kiln) moves
 * it to `KILN_EXTRA_CA_CERTS` so that Node does not parse every certificate at start-up, which costs
 * tens of milliseconds in each kiln process, most of which never open a TLS connection; kiln adds
 * these CAs itself to the connections it makes.
 */
export function extraCAFile(env: NodeJS.ProcessEnv = process.env): string | undefined {
  return env.KILN_EXTRA_CA_CERTS || env.NODE_EXTRA_CA_CERTS || undefined;
}

/**
 * The CAs every TLS connection of kiln trusts: Node's bundled roots, the system bundle and the
 * extra CAs. An unreadable extra file is skipped, as Node skips it (with a warning of its own).
 */
export async function trustedCAs(env: NodeJS.ProcessEnv = process.env): Promise<string[]> {
  const extra = extraCAFile(env);
  const extraText = extra ? await fsp.readFile(extra, 'utf8').catch(() => undefined) : undefined;
  return [...rootCertificates, ...(await readSystemBundle()), ...(extraText ? [extraText] : [])];
}

/** CAs and client certificate for `host` (as written in references: `registry.example:5000`). */
export async function tlsMaterialFor(host: string, env: NodeJS.ProcessEnv = process.env): Promise<TlsMaterial> {
  const out: TlsMaterial = { ca: await trustedCAs(env), files: [] };
  for (const root of certsDirs(env)) {
    const dir = join(root, host);
    let names: string[];
    try {
      names = (await fsp.readdir(dir)).sort();
    } catch {
      continue;
    }
    for (const name of names) {
      const path = join(dir, name);
      if (name.endsWith('.crt')) {
        out.ca.push(await fsp.readFile(path, 'utf8'));
        out.files.push(path);
      } else if (name.endsWith('.cert') && !out.cert) {
        const keyPath = join(dir, `${name.slice(0, -'.cert'.length)}.key`);
        try {
          out.key = await fsp.readFile(keyPath);
          out.cert = await fsp.readFile(path);
          out.files.push(path, keyPath);
        } catch {
          // a certificate without its key is not usable; docker refuses it too
        }
      }
    }
  }
  return out;
}
