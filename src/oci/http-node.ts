/**
 * Small HTTP exchanges (HEAD, manifests, tokens, tag lists: no streamed body either way) through
 * Node's own node:http / node:https, loaded on the first such request. undici (src/oci/http.ts)
 * stays the client for blob transfers; loading it and starting its WebAssembly parser for one
 * HEAD request cost more than the rest of a no-op `cpm install REGISTRY/IMAGE:TAG` (≈ 45 ms of
 * CPU, docs/performance.md), and a no-op needs nothing but that HEAD.
 *
 * What the registry client relies on is kept: keep-alive connections per client (at most
 * `connections` per origin), the connect timeout and the idle timeout (no bytes for that long,
 * headers or body) as errors of their own codes, the TLS options, abort signals, and a response
 * of the same shape as undici's (lower-case headers, repeated ones as arrays; a body with
 * dump/text/json/arrayBuffer).
 */
import type * as Http from 'node:http';
import type * as Https from 'node:https';
import type { Readable } from 'node:stream';
import { http, https } from '../util/lazy-builtins.js';

export type HttpMethod = 'GET' | 'HEAD' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';

/** A response body: a stream, and undici's helpers to read it whole or drop it. */
export interface ResponseBody extends Readable {
  /** Reads and drops what is left (up to 128 KiB, then the connection is closed); never throws. */
  dump(): Promise<void>;
  text(): Promise<string>;
  json(): Promise<unknown>;
  arrayBuffer(): Promise<ArrayBuffer>;
}

/** One response, the shape undici's request() gives and src/oci/registry.ts reads. */
export interface HttpResponse {
  statusCode: number;
  headers: Record<string, string | string[] | undefined>;
  body: ResponseBody;
}

/** Error codes of the two timeouts (src/oci/registry.ts words them). */
export const CONNECT_TIMEOUT = 'CPM_CONNECT_TIMEOUT';
export const IDLE_TIMEOUT = 'CPM_IDLE_TIMEOUT';

export interface NodeHttpOptions {
  /** Connections per origin. */
  connections: number;
  connectTimeoutMs: number;
  /** No bytes for this long once connected (waiting for the headers or within the body). */
  idleTimeoutMs: number;
  ca?: string | Buffer;
  rejectUnauthorized: boolean;
}

export interface NodeRequestOptions {
  method: HttpMethod;
  headers?: Record<string, string>;
  body?: Buffer | null;
  signal?: AbortSignal;
}

const DUMP_LIMIT = 128 << 10;

function timeoutError(code: string, what: string): Error {
  return Object.assign(new Error(`${what} timeout`), { code });
}

async function collect(r: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of r) parts.push(c as Buffer);
  return Buffer.concat(parts);
}

function asBody(r: Http.IncomingMessage): ResponseBody {
  const methods: Omit<ResponseBody, keyof Readable> = {
    dump: () =>
      new Promise<void>((resolve) => {
        if (r.readableEnded || r.destroyed) return resolve();
        let seen = 0;
        r.on('data', (c: Buffer) => {
          seen += c.length;
          if (seen > DUMP_LIMIT) r.destroy();
        });
        r.once('error', () => undefined);
        r.once('close', () => resolve());
        r.resume();
      }),
    text: async () => (await collect(r)).toString('utf8'),
    json: async () => JSON.parse((await collect(r)).toString('utf8')) as unknown,
    arrayBuffer: async () => {
      const b = await collect(r);
      return b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength) as ArrayBuffer;
    },
  };
  return Object.assign(r, methods);
}

/** Headers as undici gives them: a string, or an array when the header was repeated. */
function headersOf(r: Http.IncomingMessage): HttpResponse['headers'] {
  const out: HttpResponse['headers'] = {};
  for (const [k, v] of Object.entries(r.headersDistinct)) {
    if (v) out[k] = v.length === 1 ? v[0] : v;
  }
  return out;
}

/** Keep-alive connections of one registry client, by node:http and node:https. */
export class NodeHttpPool {
  private http: Http.Agent | undefined;
  private https: Https.Agent | undefined;
  constructor(private readonly opts: NodeHttpOptions) {}

  private agent(secure: boolean): Http.Agent {
    const base = { keepAlive: true, maxSockets: this.opts.connections };
    if (!secure) return (this.http ??= new (http().Agent)(base));
    return (this.https ??= new (https().Agent)({
      ...base,
      rejectUnauthorized: this.opts.rejectUnauthorized,
      ...(this.opts.ca !== undefined ? { ca: this.opts.ca } : {}),
    }));
  }

  /** One exchange; resolves with the response once its headers arrived. */
  request(url: string | URL, o: NodeRequestOptions): Promise<HttpResponse> {
    const u = typeof url === 'string' ? new URL(url) : url;
    const secure = u.protocol === 'https:';
    return new Promise<HttpResponse>((resolve, reject) => {
      let req: Http.ClientRequest;
      let res: Http.IncomingMessage | undefined;
      let connectTimer: NodeJS.Timeout | undefined;
      const fail = (e: Error): void => {
        clearTimeout(connectTimer);
        if (res) res.destroy(e);
        else req.destroy(e);
      };
      try {
        const mod = secure ? https() : http();
        // node:http refuses another protocol (ERR_INVALID_PROTOCOL), as undici does
        req = mod.request(u, {
          method: o.method,
          headers: o.headers ?? {},
          agent: this.agent(secure),
          ...(o.signal ? { signal: o.signal } : {}),
        });
      } catch (e) {
        reject(e as Error);
        return;
      }
      req.on('socket', (s) => {
        if (!s.connecting) return; // a kept-alive connection
        connectTimer = setTimeout(
          () => fail(timeoutError(CONNECT_TIMEOUT, 'connect')),
          this.opts.connectTimeoutMs,
        );
        s.once(secure ? 'secureConnect' : 'connect', () => clearTimeout(connectTimer));
        s.once('close', () => clearTimeout(connectTimer));
      });
      // armed once connected, on the socket: silence before the headers or within the body
      req.setTimeout(this.opts.idleTimeoutMs, () => fail(timeoutError(IDLE_TIMEOUT, 'idle')));
      req.on('error', (e) => {
        clearTimeout(connectTimer);
        reject(e);
      });
      req.on('response', (r) => {
        res = r;
        resolve({ statusCode: r.statusCode ?? 0, headers: headersOf(r), body: asBody(r) });
      });
      req.end(o.body ?? undefined);
    });
  }

  close(): void {
    this.http?.destroy();
    this.https?.destroy();
  }
}
