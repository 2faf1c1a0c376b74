/** Registry hosts: which may be spoken to in plain HTTP, and where Docker Hub's API really lives. */
import { isIP } from 'node:net';
import { DEFAULT_DOMAIN } from '../oci/reference.js';

/** `host[:port]` → host name without port or IPv6 brackets. */
export function hostname(host: string): string {
  if (host.startsWith('[')) {
    const end = host.indexOf(']');
    return end > 0 ? host.slice(1, end) : host;
  }
  const colon = host.lastIndexOf(':');
  // A bare IPv6 address has several colons and no brackets; it has no port to strip.
  if (colon >= 0 && host.indexOf(':') === colon) return host.slice(0, colon);
  return host;
}

/** Loopback: 127.0.0.0/8, ::1, localhost (and its subdomains, RFC 6761). */
export function isLoopbackHost(host: string): boolean {
  const name = hostname(host).toLowerCase();
  if (name === 'localhost' || name.endsWith('.localhost')) return true;
  if (isIP(name) === 4) return name.startsWith('127.');
  if (isIP(name) === 6) return name === '::1' || name === '0:0:0:0:0:0:0:1';
  return false;
}

/**
 * Whether plain HTTP may be used for `host`: loopback always; anything else only when listed
 * (`--insecure-registry HOST`, with or without the port).
 */
export function isInsecureAllowed(host: string, insecure: readonly string[] = []): boolean {
  if (isLoopbackHost(host)) return true;
  return insecure.some((h) => h === host || h === hostname(host));
}

/** The host that serves the API for a reference's domain (`docker.io` → `registry-1.docker.io`). */
export function apiHost(domain: string): string {
  return domain === DEFAULT_DOMAIN || domain === 'index.docker.io' ? 'registry-1.docker.io' : domain;
}

/** `scheme://host[:port]`, with default ports dropped, for same-origin checks. */
export function origin(url: URL): string {
  return `${url.protocol}//${url.host}`;
}
