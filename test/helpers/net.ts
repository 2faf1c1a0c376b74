/** Reaching servers from the tests: the host's address as a container sees it, and HTTP GETs that wait for a server to come up. */
import { get as httpGet } from 'node:http';
import { networkInterfaces } from 'node:os';

/** The host's first non-loopback IPv4 address: what a container reaches the host by. */
export function hostAddress(): string {
  for (const list of Object.values(networkInterfaces())) {
    for (const a of list ?? []) if (a.family === 'IPv4' && !a.internal) return a.address;
  }
  throw new Error('the host has no non-loopback IPv4 address for a container to reach');
}

/** The body of a GET of `url`. */
export function fetchText(url: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = httpGet(url, (res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString()));
      res.on('end', () => resolve(body));
    });
    req.on('error', reject);
    req.setTimeout(10_000, () => req.destroy(new Error(`${url}: no answer`)));
  });
}

/** `fetchText`, retried (100 tries, `intervalMs` apart) while the server is still starting. */
export async function fetchEventually(url: string, intervalMs = 100): Promise<string> {
  let last: unknown;
  for (let i = 0; i < 100; i++) {
    try {
      return await fetchText(url);
    } catch (err) {
      last = err;
      await new Promise((r) => setTimeout(r, intervalMs));
    }
  }
  throw last;
}
