/**
 * undici's Agent and request(), loaded from their own modules. The package entry point also
 * loads fetch, WebSocket, EventSource, mocks and caches: ≈200 ms more startup for every command
 * that talks to a registry (measured with bench/oci). undici is pinned in package.json.
 */
import type { Dispatcher } from 'undici';
import AgentClass from 'undici/lib/dispatcher/agent.js';
import apiRequest from 'undici/lib/api/api-request.js';

export const Agent = AgentClass;
export type Agent = InstanceType<typeof AgentClass>;
export type { Dispatcher };

export interface RequestOptions {
  dispatcher: Dispatcher;
  method?: Dispatcher.HttpMethod;
  headers?: Record<string, string>;
  body?: Dispatcher.DispatchOptions['body'];
  highWaterMark?: number;
  /** Aborts the exchange (headers or body) when it fires. */
  signal?: AbortSignal;
}

/** undici's request(url, opts): one HTTP exchange on `opts.dispatcher`. */
export function request(url: string | URL, opts: RequestOptions): Promise<Dispatcher.ResponseData> {
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
  return apiRequest.call(opts.dispatcher, o);
}
