/**
 * A plain HTTP forwarding proxy that sits between a registry client and a real registry and, on
 * request, misbehaves the way networks and overloaded registries do: it answers 5xx/429 instead of
 * forwarding, cuts the TCP connection part-way through a response or request body, or delays.
 * Everything else passes through unchanged, so the client sees the real registry's protocol.
 *
 * Faults are queued with `inject` and are bounded: each applies to the next `times` (default 1)
 * matching requests and is then spent, so a client that retries sees the fault exactly that often
 * and then the real registry.
 */
import http, { type IncomingHttpHeaders, type IncomingMessage, type OutgoingHttpHeaders, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export type Fault =
  | {
      kind: 'status';
      status: 500 | 502 | 503 | 429;
      /** seconds, sent as a Retry-After header */
      retryAfter?: number;
      /** tested against `${METHOD} ${path-with-query}`, e.g. /^PATCH \/v2\/.*\/blobs\/uploads\// */
      match?: RegExp;
      times?: number;
    }
  | {
      /** Cut the TCP connection after `afterBytes` bytes of the body. */
      kind: 'drop';
      afterBytes: number;
      /**
       * 'response' (default): forward the registry's status and headers, then the first `afterBytes`
       * body bytes, then close — only successful (2xx) responses whose body is longer than
       * `afterBytes` qualify, so an earlier 401 challenge or a HEAD does not use up the fault.
       * 'request': forward the first `afterBytes` bytes of the request body to the registry, then
       * reset both connections — only requests whose body is longer than `afterBytes` qualify.
       */
      direction?: 'response' | 'request';
      match?: RegExp;
      times?: number;
    }
  | { kind: 'delay'; ms: number; match?: RegExp; times?: number };

export interface ProxiedRequest {
  method: string;
  /** path and query as the client sent them */
  path: string;
  /** status the client saw; 0 if the connection was cut before any status */
  status: number;
  /** the kind of fault that fired on this request, if any */
  fault?: Fault['kind'];
}

export interface FaultProxy {
  /** point the client at this instead of the registry */
  url: string;
  host: string;
  /** the registry this proxy forwards to */
  target: string;
  /** queue faults; each applies to the next matching request */
  inject(f: Fault): void;
  /** faults not yet spent, with how many uses each has left */
  pending(): Array<{ fault: Fault; remaining: number }>;
  /** forgets every queued fault */
  clearFaults(): void;
  stats: { requests: number; bytesToServer: number; bytesToClient: number; faultsFired: number };
  /** every request seen, in arrival order */
  requests: ProxiedRequest[];
  stop(): Promise<void>;
}

interface Armed {
  fault: Fault;
  remaining: number;
}

// Headers that describe one connection rather than the message; a proxy must not forward them.
const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authenticate',
  'proxy-authorization',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
]);

function endToEndHeaders(headers: IncomingHttpHeaders): OutgoingHttpHeaders {
  const named = new Set(
    String(headers.connection ?? '')
      .split(',')
      .map((s) => s.trim().toLowerCase())
      .filter(Boolean),
  );
  const out: OutgoingHttpHeaders = {};
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined || HOP_BY_HOP.has(name) || named.has(name)) continue;
    out[name] = value;
  }
  return out;
}

function bodyLength(headers: IncomingHttpHeaders): number | undefined {
  const v = headers['content-length'];
  if (v === undefined) return undefined;
  const n = Number(v);
  return Number.isFinite(n) ? n : undefined;
}

function validate(f: Fault): void {
  const times = f.times ?? 1;
  if (!Number.isInteger(times) || times < 1) throw new Error(`fault.times must be a positive integer, got ${f.times}`);
  if (f.kind === 'drop' && (!Number.isInteger(f.afterBytes) || f.afterBytes < 0)) {
    throw new Error(`drop fault needs a non-negative integer afterBytes, got ${f.afterBytes}`);
  }
  if (f.kind === 'delay' && !(f.ms >= 0)) throw new Error(`delay fault needs ms >= 0, got ${f.ms}`);
  if (f.kind === 'status' && f.retryAfter !== undefined && !(f.retryAfter >= 0)) {
    throw new Error(`retryAfter must be >= 0 seconds, got ${f.retryAfter}`);
  }
}

const ERROR_CODES: Record<number, string> = {
  429: 'TOOMANYREQUESTS',
  500: 'UNKNOWN',
  502: 'UNAVAILABLE',
  503: 'UNAVAILABLE',
};

export async function startFaultProxy(target: string): Promise<FaultProxy> {
  const targetUrl = new URL(target);
  if (targetUrl.protocol !== 'http:') throw new Error(`the fault proxy forwards plain http only, got ${target}`);
  const targetOrigin = targetUrl.origin;
  const targetPort = Number(targetUrl.port || 80);
  const targetHostname = targetUrl.hostname;

  const queue: Armed[] = [];
  const stats = { requests: 0, bytesToServer: 0, bytesToClient: 0, faultsFired: 0 };
  const requests: ProxiedRequest[] = [];
  // Our own agent, so stop() can close the pooled connections to the registry.
  const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });
  let proxyOrigin = '';

  /** Takes one use of the first queued fault (in injection order) that `accepts`. */
  function take(accepts: (f: Fault) => boolean): Armed | undefined {
    const armed = queue.find((a) => a.remaining > 0 && accepts(a.fault));
    if (armed) armed.remaining--;
    return armed;
  }
  /** Returns a use that turned out not to apply (the body was shorter than the cut point). */
  function giveBack(armed: Armed): void {
    armed.remaining++;
  }
  const matches = (f: Fault, line: string): boolean => {
    if (!f.match) return true;
    f.match.lastIndex = 0; // a /g or /y regex would otherwise remember where it last matched
    return f.match.test(line);
  };

  /** Points absolute URLs at the registry back at the proxy, so the client keeps talking through it. */
  function rewriteResponseHeaders(headers: OutgoingHttpHeaders): OutgoingHttpHeaders {
    for (const name of ['location', 'content-location', 'link', 'www-authenticate']) {
      const v = headers[name];
      if (v === undefined) continue;
      const swap = (s: string): string => s.split(targetOrigin).join(proxyOrigin);
      headers[name] = Array.isArray(v) ? v.map(swap) : typeof v === 'string' ? swap(v) : v;
    }
    return headers;
  }

  function answerWithStatus(
    req: IncomingMessage,
    res: ServerResponse,
    f: Extract<Fault, { kind: 'status' }>,
    entry: ProxiedRequest,
  ): void {
    const body = JSON.stringify({
      errors: [{ code: ERROR_CODES[f.status] ?? 'UNKNOWN', message: `fault injected by the test proxy: ${f.status}` }],
    });
    const headers: OutgoingHttpHeaders = {
      'content-type': 'application/json; charset=utf-8',
      'content-length': Buffer.byteLength(body),
    };
    if (f.retryAfter !== undefined) headers['retry-after'] = String(f.retryAfter);
    // The body is read and discarded so the connection stays usable for the client's retry.
    req.resume();
    req.once('end', () => {
      entry.status = f.status;
      res.writeHead(f.status, headers);
      res.end(body);
    });
  }

  function forward(req: IncomingMessage, res: ServerResponse, entry: ProxiedRequest, requestDrop?: Armed): void {
    const line = `${req.method} ${req.url}`;
    const headers = endToEndHeaders(req.headers);
    headers.host = targetUrl.host;
    const upstream = http.request({
      host: targetHostname,
      port: targetPort,
      method: req.method,
      path: req.url,
      headers,
      agent,
    });
    let cut = false;

    // Request body: forward it, counting bytes, and cut it short if a request-direction drop is armed.
    let sentUp = 0;
    const cutAfter = requestDrop && requestDrop.fault.kind === 'drop' ? requestDrop.fault.afterBytes : undefined;
    req.on('data', (chunk: Buffer) => {
      if (cut) return;
      if (cutAfter !== undefined && sentUp + chunk.length > cutAfter) {
        cut = true;
        stats.faultsFired++;
        entry.fault = 'drop';
        const part = chunk.subarray(0, cutAfter - sentUp);
        sentUp += part.length;
        stats.bytesToServer += part.length;
        // The registry gets exactly the first afterBytes bytes, then both connections die.
        upstream.write(part, () => upstream.destroy());
        req.socket.destroy();
        return;
      }
      sentUp += chunk.length;
      stats.bytesToServer += chunk.length;
      if (!upstream.write(chunk)) {
        req.pause();
        upstream.once('drain', () => req.resume());
      }
    });
    req.on('end', () => {
      if (cut) return;
      // A chunked body that ended before the cut point: the fault did not apply, keep it queued.
      if (requestDrop) giveBack(requestDrop);
      upstream.end();
    });
    // The client went away (or we cut it): the registry request has no reason to go on.
    res.on('close', () => {
      if (!res.writableFinished) upstream.destroy();
    });

    upstream.on('error', (err) => {
      if (cut || res.destroyed) return;
      if (!res.headersSent) {
        const body = JSON.stringify({ errors: [{ code: 'UNAVAILABLE', message: `proxy could not reach ${target}: ${err.message}` }] });
        entry.status = 502;
        res.writeHead(502, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
        res.end(body);
      } else {
        res.destroy();
      }
    });

    upstream.on('response', (up) => {
      if (cut) {
        up.destroy();
        return;
      }
      const status = up.statusCode ?? 502;
      entry.status = status;
      const length = bodyLength(up.headers);
      const responseDrop =
        status >= 200 && status < 300 && req.method !== 'HEAD'
          ? take(
              (f) =>
                f.kind === 'drop' &&
                (f.direction ?? 'response') === 'response' &&
                matches(f, line) &&
                (length === undefined || length > f.afterBytes),
            )
          : undefined;
      const dropAt = responseDrop && responseDrop.fault.kind === 'drop' ? responseDrop.fault.afterBytes : undefined;

      res.writeHead(status, up.statusMessage, rewriteResponseHeaders(endToEndHeaders(up.headers)));
      let sentDown = 0;
      const cutResponse = (part: Buffer): void => {
        cut = true;
        stats.faultsFired++;
        entry.fault = 'drop';
        sentDown += part.length;
        stats.bytesToClient += part.length;
        up.destroy();
        // Close only once the partial body has reached the kernel, so the client really receives it.
        res.write(part, () => res.socket?.destroy());
      };
      if (dropAt === 0) {
        res.flushHeaders();
        cutResponse(Buffer.alloc(0));
        return;
      }
      up.on('data', (chunk: Buffer) => {
        if (cut) return;
        if (dropAt !== undefined && sentDown + chunk.length > dropAt) {
          cutResponse(chunk.subarray(0, dropAt - sentDown));
          return;
        }
        sentDown += chunk.length;
        stats.bytesToClient += chunk.length;
        if (!res.write(chunk)) {
          up.pause();
          res.once('drain', () => up.resume());
        }
      });
      up.on('end', () => {
        if (cut) return;
        if (responseDrop) giveBack(responseDrop);
        res.end();
      });
      up.on('error', () => {
        if (!cut) res.destroy();
      });
    });
  }

  const server = http.createServer((req, res) => {
    stats.requests++;
    const line = `${req.method} ${req.url}`;
    const entry: ProxiedRequest = { method: req.method ?? '', path: req.url ?? '', status: 0 };
    requests.push(entry);
    const reqLength = bodyLength(req.headers);
    const chunked = req.headers['transfer-encoding'] !== undefined;

    const armed = take((f) => {
      if (!matches(f, line)) return false;
      if (f.kind === 'status' || f.kind === 'delay') return true;
      return (
        f.direction === 'request' && (reqLength !== undefined ? reqLength > f.afterBytes : chunked)
      );
    });
    const f = armed?.fault;
    if (f?.kind === 'status') {
      stats.faultsFired++;
      entry.fault = 'status';
      answerWithStatus(req, res, f, entry);
    } else if (f?.kind === 'delay') {
      stats.faultsFired++;
      entry.fault = 'delay';
      const timer = setTimeout(() => {
        if (!res.destroyed) forward(req, res, entry);
      }, f.ms);
      // Until it is answered, the response closes only if the client hangs up: then nothing is forwarded.
      res.once('close', () => clearTimeout(timer));
    } else {
      forward(req, res, entry, armed);
    }
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  const host = `127.0.0.1:${port}`;
  proxyOrigin = `http://${host}`;

  let stopped: Promise<void> | undefined;
  return {
    url: proxyOrigin,
    host,
    target: targetOrigin,
    inject(f: Fault) {
      validate(f);
      queue.push({ fault: f, remaining: f.times ?? 1 });
    },
    pending() {
      return queue.filter((a) => a.remaining > 0).map((a) => ({ fault: a.fault, remaining: a.remaining }));
    },
    clearFaults() {
      queue.length = 0;
    },
    stats,
    requests,
    stop() {
      stopped ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
        agent.destroy();
      });
      return stopped;
    },
  };
}
