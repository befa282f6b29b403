/**
 * undici's Agent and request(), loaded from their own modules, on the first request: the
 * registry client's blob transfers and repository files (src/repo/files.ts); the registry
 * client's other exchanges go through node:http (src/oci/http-node.ts). The package entry point also
 * loads fetch, WebSocket, EventSource, mocks and caches: ≈200 ms more startup for every command
 * that talks to a registry (measured with bench/oci). undici is pinned in package.json.
 */
import type { Dispatcher } from 'undici';
import type AgentClass from 'undici/lib/dispatcher/agent.js';
import type apiRequest from 'undici/lib/api/api-request.js';

export type { Dispatcher };

interface Undici {
  Agent: typeof AgentClass;
  request: typeof apiRequest;
}
let undici: Promise<Undici> | undefined;
/** undici, loaded on the first request: a command that ends up not talking HTTP never parses it. */
function loadUndici(): Promise<Undici> {
  return (undici ??= Promise.all([
    import('undici/lib/dispatcher/agent.js'),
    import('undici/lib/api/api-request.js'),
    baselineWasm(),
  ]).then(([a, r]) => ({ Agent: a.default, request: r.default })));
}

/**
 * undici parses HTTP with llhttp compiled to WebAssembly on the first connection. Node 20's V8
 * also compiles the whole module with its optimising tier at that point: ≈ 230 ms of CPU (more
 * than the rest of a no-op `cpm install REF`), for a parser that only walks headers and chunk
 * framing (bodies are handed over as slices). The baseline tier alone does that as well. Node ≥ 22
 * compiles WebAssembly lazily already and is left alone. cpm runs no other WebAssembly.
 */
async function baselineWasm(): Promise<void> {
  if (Number(process.versions.node.split('.')[0]) >= 22) return;
  // loaded here: node:v8 costs a no-op command that never connects ≈ 10 ms
  const v8 = await import('node:v8');
  v8.setFlagsFromString('--liftoff-only');
}

export type AgentOptions = ConstructorParameters<typeof AgentClass>[0];

/** A connection pool (undici's Agent), made on first use. */
export class Agent {
  private pool: Promise<InstanceType<typeof AgentClass>> | undefined;
  constructor(private readonly opts: AgentOptions) {}
  dispatcher(): Promise<Dispatcher> {
    return (this.pool ??= loadUndici().then((u) => new u.Agent(this.opts)));
  }
  async close(): Promise<void> {
    if (this.pool) await (await this.pool).close();
  }
}

export interface RequestOptions {
  dispatcher: Agent;
  method?: Dispatcher.HttpMethod;
  headers?: Record<string, string>;
  body?: Dispatcher.DispatchOptions['body'];
  highWaterMark?: number;
  /** Aborts the exchange (headers or body) when it fires. */
  signal?: AbortSignal;
}

/** undici's request(url, opts): one HTTP exchange on `opts.dispatcher`. */
export async function request(
  url: string | URL,
  opts: RequestOptions,
): Promise<Dispatcher.ResponseData> {
  const u = typeof url === 'string' ? new URL(url) : url;
  const o: Dispatcher.RequestOptions = {
    origin: u.origin,
    path: `${u.pathname}${u.search}`,
    method: opts.method ?? 'GET',
  };
  if (opts.headers) o.headers = opts.headers;
  if (opts.body !== undefined) o.body = opts.body;
  if (opts.highWaterMark !== undefined) o.highWaterMark = opts.highWaterMark;
  if (opts.signal) o.signal = opts.signal;
  const [{ request: send }, dispatcher] = await Promise.all([
    loadUndici(),
    opts.dispatcher.dispatcher(),
  ]);
  return send.call(dispatcher, o);
}
