/**
 * One HTTP exchange with streaming bodies, on keep-alive agents per origin (HTTPS agents carry the
 * registry's CAs from certs.d). Everything above this — auth, retries, redirects, error mapping —
 * lives in the registry client; this layer only sends, times out and normalises failures.
 */
import http, { type IncomingHttpHeaders, type IncomingMessage } from 'node:http';
import https from 'node:https';
import { Readable } from 'node:stream';
import { tlsMaterialFor } from './tls.js';

export interface HttpRequest {
  method: string;
  url: URL;
  headers?: Record<string, string>;
  /** A body for this one attempt; a stream is consumed by it. */
  body?: Buffer | Readable;
}

export interface HttpResponse {
  method: string;
  status: number;
  headers: IncomingHttpHeaders;
  url: URL;
  body: IncomingMessage;
}

export interface TransportOptions {
  /** A socket idle this long (connecting, sending or receiving) fails the request. Default 60 s. */
  idleTimeoutMs?: number;
  userAgent?: string;
  env?: NodeJS.ProcessEnv;
  /** Connections kept per origin. */
  maxSockets?: number;
}

/** A failure below HTTP: no response (or no complete one) arrived. */
export class NetworkError extends Error {
  constructor(
    message: string,
    readonly code: string,
    readonly tls: boolean,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'NetworkError';
  }
}

const TLS_CODES = /^(ERR_SSL_|ERR_TLS_|CERT_|UNABLE_TO_|DEPTH_ZERO|SELF_SIGNED|EPROTO$|HOSTNAME_MISMATCH|ERR_OSSL)/;

export function toNetworkError(err: unknown): NetworkError {
  if (err instanceof NetworkError) return err;
  const e = err as NodeJS.ErrnoException;
  const code = e?.code ?? 'ECONNRESET';
  const tls = TLS_CODES.test(code) || /SSL|certificate|TLS/i.test(e?.message ?? '');
  return new NetworkError(e?.message ?? String(err), code, tls, { cause: err });
}

export class HttpTransport {
  readonly idleTimeoutMs: number;
  readonly userAgent: string;
  private readonly env: NodeJS.ProcessEnv;
  private readonly maxSockets: number;
  private readonly agents = new Map<string, Promise<http.Agent>>();

  constructor(opts: TransportOptions = {}) {
    this.idleTimeoutMs = opts.idleTimeoutMs ?? 60_000;
    this.userAgent = opts.userAgent ?? 'kiln/0.1';
    this.env = opts.env ?? process.env;
    this.maxSockets = opts.maxSockets ?? 16;
  }

  private agentFor(url: URL): Promise<http.Agent> {
    const key = `${url.protocol}//${url.host}`;
    let agent = this.agents.get(key);
    if (!agent) {
      agent =
        url.protocol === 'https:'
          ? tlsMaterialFor(url.host, this.env).then(
              (tls) =>
                new https.Agent({
                  keepAlive: true,
                  maxSockets: this.maxSockets,
                  ca: tls.ca,
                  ...(tls.cert && tls.key ? { cert: tls.cert, key: tls.key } : {}),
                }),
            )
          : Promise.resolve(new http.Agent({ keepAlive: true, maxSockets: this.maxSockets }));
      this.agents.set(key, agent);
    }
    return agent;
  }

  /** Sends one request; resolves with the response head once it arrives (the body is left to read). */
  async send(req: HttpRequest): Promise<HttpResponse> {
    const agent = await this.agentFor(req.url);
    const mod = req.url.protocol === 'https:' ? https : http;
    const headers: Record<string, string> = { 'User-Agent': this.userAgent, ...req.headers };
    if (Buffer.isBuffer(req.body)) headers['Content-Length'] = String(req.body.length);
    else if (!req.body && ['PUT', 'POST', 'PATCH'].includes(req.method) && headers['Content-Length'] === undefined) headers['Content-Length'] = '0';
    return new Promise<HttpResponse>((resolve, reject) => {
      let settled = false;
      const fail = (err: unknown) => {
        if (settled) return;
        settled = true;
        if (req.body instanceof Readable) req.body.destroy();
        reject(toNetworkError(err));
      };
      const cr = mod.request(req.url, { method: req.method, headers, agent }, (res) => {
        if (settled) {
          res.destroy();
          return;
        }
        settled = true;
        // The idle timeout keeps watching the socket while the body is read.
        res.on('error', () => undefined);
        resolve({ method: req.method, status: res.statusCode ?? 0, headers: res.headers, url: req.url, body: res });
      });
      cr.setTimeout(this.idleTimeoutMs, () => {
        const err = Object.assign(new Error(`no data for ${Math.round(this.idleTimeoutMs / 1000)}s`), { code: 'ETIMEDOUT' });
        cr.destroy(err);
      });
      cr.on('error', fail);
      if (req.body instanceof Readable) {
        const body = req.body;
        body.on('error', (err) => {
          cr.destroy(err);
          fail(err);
        });
        body.pipe(cr);
      } else {
        cr.end(req.body);
      }
    });
  }

  /** Closes every pooled connection (idle keep-alive sockets would otherwise linger until they time out). */
  async close(): Promise<void> {
    const agents = await Promise.allSettled([...this.agents.values()]);
    for (const a of agents) if (a.status === 'fulfilled') a.value.destroy();
    this.agents.clear();
  }
}

/** Reads a (small) response body, at most `limit` bytes; the rest is discarded. */
export async function readBody(res: HttpResponse, limit = 4 * 1024 * 1024): Promise<Buffer> {
  const parts: Buffer[] = [];
  let n = 0;
  try {
    for await (const chunk of res.body) {
      const b = chunk as Buffer;
      if (n + b.length > limit) {
        parts.push(b.subarray(0, limit - n));
        n = limit;
        res.body.destroy();
        break;
      }
      parts.push(b);
      n += b.length;
    }
  } catch (err) {
    throw toNetworkError(err);
  }
  return Buffer.concat(parts, n);
}

/** Throws away a response body without reading it into memory, keeping the connection reusable when cheap. */
export function discardBody(res: HttpResponse): void {
  const len = Number(res.headers['content-length'] ?? NaN);
  // A HEAD response's Content-Length describes a body that is not sent.
  if (res.method === 'HEAD' || (Number.isFinite(len) && len <= 64 * 1024)) res.body.resume();
  else res.body.destroy();
}

export function headerValue(headers: IncomingHttpHeaders, name: string): string | undefined {
  const v = headers[name.toLowerCase()];
  return Array.isArray(v) ? v.join(', ') : v;
}
