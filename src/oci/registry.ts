/**
 * OCI distribution client: manifests, blobs (streamed into the BlobStore, verified,
 * resumed with Range), uploads (monolithic, chunked, cross-repository mount), tag listing, and
 * auth (anonymous, Basic, Bearer token flow with a per-scope token cache).
 *
 * Transport: blob downloads and uploads go through undici (src/oci/http.ts); every other exchange
 * (HEAD, manifests, tokens, tag lists, the start of an upload) through node:http/https
 * (src/oci/http-node.ts), so a command that only asks what a tag points at never loads undici.
 *
 * Retries: connection errors, 429 (honouring Retry-After) and 5xx are retried with exponential
 * backoff. Secrets live only in Authorization headers; messages and logs carry method, path and
 * status, never headers or query strings.
 */
import { Agent, request } from './http.js';
import {
  CONNECT_TIMEOUT,
  IDLE_TIMEOUT,
  NodeHttpPool,
  type HttpMethod,
  type HttpResponse,
} from './http-node.js';
import type { Readable } from 'node:stream';
import { createReadStream } from 'node:fs';
import { CpmError, type ErrorCode } from '../errors.js';
import { basicHeader, findCredentials, parseChallenge, type Credentials } from './auth.js';
import type { BlobRef, BlobStore } from './blobstore.js';
import { isDigest, sha256 } from './digest.js';
import { isLoopbackHost } from './reference.js';
import { MANIFEST_ACCEPT } from './types.js';
import { networkSettings } from '../util/net.js';
import type { TransferProgress } from '../util/progress.js';
import { interruptSignal, throwIfInterrupted } from '../util/signals.js';
import { streamPromises } from '../util/lazy-builtins.js';

export interface RegistryOptions {
  /** Force plain http (true) or https (false); default: http for loopback hosts, else https. */
  plainHttp?: boolean;
  /** The registry's `insecure: true`: plain http for a non-loopback host. */
  insecure?: boolean;
  /** Extra CA certificates (PEM) trusted for this registry. */
  ca?: string | Buffer;
  /** Verify TLS certificates (default true). */
  tlsVerify?: boolean;
  /** Explicit credentials; default: looked up in the auth files (see auth.ts). */
  credentials?: Credentials | null;
  /** Auth files to search instead of the default candidates. */
  authFiles?: string[];
  /** Attempts after the first for retryable failures (default 5). */
  retries?: number;
  /** First backoff delay in ms, doubled per attempt (default 200). */
  retryBaseMs?: number;
  /** Upper bound for one wait, including Retry-After (default 30 s). */
  maxRetryDelayMs?: number;
  /** Connections per registry (default 8). */
  connections?: number;
  /** Time to establish a connection (default: util/net.ts, 10 s). */
  connectTimeoutMs?: number;
  /** Time a response may stay silent, headers or body (default 30 s). */
  idleTimeoutMs?: number;
  /** Total time retries of one request (or one blob download) may take (default 2 min). */
  retryBudgetMs?: number;
  /** Debug log sink: receives "METHOD /path -> status" lines, never headers. */
  log?: (line: string) => void;
}

export interface ManifestResponse {
  bytes: Buffer;
  mediaType: string;
  digest: string;
}

export interface PushBlobOptions {
  /** Try a cross-repository mount from this repository first. */
  mountFrom?: string;
  /** Upload in PATCH chunks of this many bytes instead of one PUT. */
  chunkSize?: number;
}

export type PushBlobResult = 'exists' | 'mounted' | 'uploaded';

const MAX_MANIFEST = 4 << 20;
/** Tag lists and token answers: far above what a registry sends, far below what hurts. */
const MAX_SMALL_BODY = 16 << 20;
const RETRYABLE_STATUS = (s: number): boolean => s === 429 || s >= 500;

interface ReqBase {
  method: HttpMethod;
  /** Path (with query) below the registry base, or an absolute URL (upload locations). */
  url: string;
  headers?: Record<string, string>;
  /** Token scopes this request needs, e.g. "repository:a/b:pull". */
  scopes: string[];
  /** Send at most once (the body cannot be replayed). */
  noRetry?: boolean;
  /** The caller gives up on the request (and its retries) when this fires. */
  cancel?: AbortSignal;
}

/**
 * A blob's bytes in either direction (`bulk`) go through undici; everything else, whose body is
 * at most a Buffer, through node:http.
 */
type Req = ReqBase &
  ({ bulk: true; body?: () => Buffer | Readable } | { bulk?: false; body?: () => Buffer });

interface HostAuth {
  scheme: 'basic' | 'bearer';
  realm?: string;
  service?: string;
}

/**
 * A backoff wait that a SIGINT/SIGTERM ends at once (E_INTERRUPTED), as does the caller's
 * `cancel` (its reason is thrown).
 */
async function sleep(ms: number, cancel?: AbortSignal): Promise<void> {
  const signal = withCancel(cancel);
  await new Promise<void>((resolve) => {
    const t = setTimeout(done, ms);
    function done(): void {
      clearTimeout(t);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });
  throwIfCancelled(cancel);
}

/** The interrupt signal, or it and the caller's `cancel` together. */
function withCancel(cancel: AbortSignal | undefined): AbortSignal {
  return cancel ? AbortSignal.any([interruptSignal(), cancel]) : interruptSignal();
}

/** E_INTERRUPTED on a signal; the reason of `cancel` once the caller gave up on the request. */
function throwIfCancelled(cancel: AbortSignal | undefined): void {
  throwIfInterrupted();
  if (cancel?.aborted)
    throw cancel.reason instanceof Error
      ? cancel.reason
      : new CpmError('E_INTERRUPTED', 'the download was cancelled');
}

const TIMEOUT_CODES: Record<string, string> = {
  [CONNECT_TIMEOUT]: 'connect',
  [IDLE_TIMEOUT]: 'idle',
  UND_ERR_CONNECT_TIMEOUT: 'connect',
  UND_ERR_HEADERS_TIMEOUT: 'idle',
  UND_ERR_BODY_TIMEOUT: 'idle',
};

function errCode(e: unknown): string | undefined {
  const c = (e as { code?: unknown })?.code;
  return typeof c === 'string' ? c : undefined;
}

/** Certificate and TLS protocol failures: retrying cannot fix them. */
function isTlsError(e: unknown): boolean {
  const c = errCode(e) ?? '';
  return /^(ERR_TLS|ERR_SSL|CERT_|UNABLE_TO_|SELF_SIGNED|DEPTH_ZERO_|HOSTNAME_MISMATCH|ERR_OSSL)/.test(
    c,
  );
}

/**
 * Connection-level errors worth another attempt (resets, refused, timeouts, undici socket errors).
 * ENOTFOUND is not one: the resolver answered that the name does not exist (a typo, a host of
 * another network), and retrying it cost ≈ 6 s per unresolvable host. EAI_AGAIN (no answer yet)
 * is retried.
 */
export function isRetryableNetError(e: unknown): boolean {
  const c = errCode(e);
  return c !== undefined && c !== 'ENOTFOUND' && !isTlsError(e);
}

/** Path-only rendering of a URL for messages (drops query: upload state, tokens). */
function showUrl(u: string): string {
  try {
    return new URL(u).pathname;
  } catch {
    return u.split('?')[0] ?? u;
  }
}

export class RegistryClient {
  readonly registry: string;
  readonly baseUrl: string;
  private readonly dispatcher: Agent;
  private readonly small: NodeHttpPool;
  private readonly creds: Credentials | undefined;
  private hostAuth: HostAuth | undefined;
  private readonly tokens = new Map<string, { token: string; expires: number }>();
  private readonly retries: number;
  private readonly retryBaseMs: number;
  private readonly maxRetryDelayMs: number;
  private readonly retryBudgetMs: number;
  private readonly connectTimeoutMs: number;
  private readonly idleTimeoutMs: number;
  private readonly log: (line: string) => void;

  constructor(registry: string, opts: RegistryOptions = {}) {
    this.registry = registry.toLowerCase();
    const plain = opts.plainHttp ?? (opts.insecure === true || isLoopbackHost(this.registry));
    this.baseUrl = `${plain ? 'http' : 'https'}://${this.registry}`;
    const net = networkSettings();
    this.connectTimeoutMs = opts.connectTimeoutMs ?? net.connectTimeoutMs;
    this.idleTimeoutMs = opts.idleTimeoutMs ?? net.idleTimeoutMs;
    this.retryBudgetMs = opts.retryBudgetMs ?? net.retryBudgetMs;
    const connections = opts.connections ?? 8;
    this.dispatcher = new Agent({
      connections,
      // a registry that accepts and never answers, or stalls mid-body, is given up on
      headersTimeout: this.idleTimeoutMs,
      bodyTimeout: this.idleTimeoutMs,
      connect: {
        timeout: this.connectTimeoutMs,
        ...(opts.ca !== undefined ? { ca: opts.ca } : {}),
        rejectUnauthorized: opts.tlsVerify ?? true,
      },
    });
    this.small = new NodeHttpPool({
      connections,
      connectTimeoutMs: this.connectTimeoutMs,
      idleTimeoutMs: this.idleTimeoutMs,
      rejectUnauthorized: opts.tlsVerify ?? true,
      ...(opts.ca !== undefined ? { ca: opts.ca } : {}),
    });
    this.creds =
      opts.credentials === null
        ? undefined
        : (opts.credentials ?? findCredentials(this.registry, opts.authFiles));
    this.retries = opts.retries ?? 5;
    this.retryBaseMs = opts.retryBaseMs ?? 200;
    this.maxRetryDelayMs = opts.maxRetryDelayMs ?? 30_000;
    this.log = opts.log ?? (() => undefined);
  }

  async close(): Promise<void> {
    this.small.close();
    await this.dispatcher.close();
  }

  /** GET /v2/ — checks reachability and credentials (used by `cpm login`). */
  async ping(): Promise<void> {
    const res = await this.send({ method: 'GET', url: '/v2/', scopes: [] });
    await this.expect(res, [200], 'GET /v2/');
  }

  async getManifest(repo: string, reference: string): Promise<ManifestResponse> {
    const res = await this.send({
      method: 'GET',
      url: `/v2/${repo}/manifests/${reference}`,
      headers: { accept: MANIFEST_ACCEPT.join(', ') },
      scopes: [`repository:${repo}:pull`],
    });
    await this.expect(res, [200], `manifest ${repo}:${reference}`);
    const bytes = await this.bodyOf(res, `manifest ${repo}:${reference}`, MAX_MANIFEST);
    const digest = sha256(bytes);
    if (isDigest(reference) && digest !== reference) {
      throw new CpmError('E_DIGEST', `manifest ${repo}@${reference} hashes to ${digest}`, {
        context: { digest: reference },
      });
    }
    let mediaType = String(res.headers['content-type'] ?? '')
      .split(';')[0]!
      .trim();
    try {
      const parsed = JSON.parse(bytes.toString('utf8')) as { mediaType?: string };
      if (parsed.mediaType) mediaType = parsed.mediaType;
    } catch {
      throw new CpmError('E_REGISTRY', `manifest ${repo}:${reference} is not JSON`, {
        context: { digest },
      });
    }
    return { bytes, mediaType, digest };
  }

  /** Digest of a manifest by tag, or undefined when the tag does not exist. */
  async headManifest(repo: string, reference: string): Promise<string | undefined> {
    const res = await this.send({
      method: 'HEAD',
      url: `/v2/${repo}/manifests/${reference}`,
      headers: { accept: MANIFEST_ACCEPT.join(', ') },
      scopes: [`repository:${repo}:pull`],
    });
    await res.body.dump();
    if (res.statusCode === 404) return undefined;
    await this.expect(res, [200], `manifest ${repo}:${reference}`);
    const d = res.headers['docker-content-digest'];
    return typeof d === 'string' ? d : undefined;
  }

  async putManifest(
    repo: string,
    reference: string,
    bytes: Buffer,
    mediaType: string,
  ): Promise<string> {
    const res = await this.send({
      method: 'PUT',
      url: `/v2/${repo}/manifests/${reference}`,
      headers: { 'content-type': mediaType },
      body: () => bytes,
      scopes: [`repository:${repo}:pull,push`],
    });
    await this.expect(res, [201, 200], `PUT manifest ${repo}:${reference}`);
    await res.body.dump();
    return sha256(bytes);
  }

  /** Size of the blob in `repo`, or undefined when absent. */
  async hasBlob(repo: string, digest: string): Promise<number | undefined> {
    const res = await this.send({
      method: 'HEAD',
      url: `/v2/${repo}/blobs/${digest}`,
      scopes: [`repository:${repo}:pull`],
    });
    await res.body.dump();
    if (res.statusCode === 404) return undefined;
    await this.expect(res, [200], `blob ${digest}`);
    return Number(res.headers['content-length'] ?? 0);
  }

  /**
   * Downloads a blob into `store` (no-op when already stored), verifying size and digest while
   * streaming. The bytes go to a partial file kept across runs: an interrupted transfer (network
   * error, timeout, SIGINT, a killed process) resumes with a Range request where it stopped, in
   * this run or the next; a registry that ignores Range restarts it. On mismatch: E_DIGEST and
   * nothing is kept — a resumed partial that turns out corrupt is dropped and fetched once anew.
   * Processes sharing `store` each write a file of their own (BlobStore.partialWriter) and wait
   * for one another instead of fetching one blob twice (BlobStore.ingest; `progress.note` says
   * so); a writer whose file does not change for the idle timeout is no longer waited for.
   * `cancel` abandons the download at once (its reason is thrown): the body is released and the
   * partial removed — a sibling failed, and nothing says this blob will be wanted again.
   */
  async fetchBlob(
    repo: string,
    blob: BlobRef,
    store: BlobStore,
    progress?: TransferProgress,
    cancel?: AbortSignal,
  ): Promise<void> {
    throwIfCancelled(cancel);
    if ((await store.size(blob.digest)) === blob.size) return;
    const turn = await store.ingest(blob, {
      stallMs: this.idleTimeoutMs,
      sleep: async (ms) => {
        await sleep(ms, cancel);
        throwIfCancelled(cancel);
      },
      onWait: (owner, pid) => {
        const msg = `waiting for ${blob.digest.slice(0, 19)} being downloaded by ${pid !== undefined ? `pid ${pid}` : `another process (${owner})`}`;
        if (progress?.note) progress.note(msg);
        else this.log(msg);
      },
    });
    if (turn === 'present') {
      // another process fetched and verified it: shown as done, not as moved by this one
      progress?.rebase(blob.size);
      return;
    }
    try {
      await this.fetchOwn(repo, blob, store, turn.owner, progress, cancel);
    } finally {
      await turn.release().catch(() => undefined);
    }
  }

  /** fetchBlob once it is this process's turn: `owner` names its partial file. */
  private async fetchOwn(
    repo: string,
    blob: BlobRef,
    store: BlobStore,
    owner: string | undefined,
    progress: TransferProgress | undefined,
    cancel: AbortSignal | undefined,
  ): Promise<void> {
    for (let fresh = false; ; fresh = true) {
      // a fresh file gets a name of its own: the old one may be another process's now
      const w = await store.partialWriter(
        { digest: blob.digest, size: blob.size },
        fresh,
        fresh ? undefined : owner,
      );
      const resumedFrom = w.received;
      if (resumedFrom > 0)
        this.log(`GET blob ${blob.digest}: resuming a partial download at ${resumedFrom} bytes`);
      try {
        await this.download(repo, blob, w, progress, cancel);
      } catch (e) {
        // a network failure or an interrupt keeps the partial for the next attempt; bytes that
        // failed verification (too many, a short blob) go, as does an abandoned download
        await w.abort((e instanceof CpmError && e.code === 'E_DIGEST') || cancel?.aborted === true);
        throw e;
      }
      try {
        await w.commit();
        return;
      } catch (e) {
        // commit() dropped the partial; bytes kept from an earlier run may have been the bad part
        // (or another process took the file over): once more from zero, in a file of our own
        if (
          e instanceof CpmError &&
          !fresh &&
          ((e.code === 'E_DIGEST' && resumedFrom > 0) || w.lost)
        ) {
          this.log(`GET blob ${blob.digest}: resumed download failed verification, refetching`);
          continue;
        }
        throw e;
      }
    }
  }

  /** The transfer loop of fetchBlob: fills `w` up to the blob's size (or throws). */
  private async download(
    repo: string,
    blob: BlobRef,
    w: Awaited<ReturnType<BlobStore['partialWriter']>>,
    progress: TransferProgress | undefined,
    cancel: AbortSignal | undefined,
  ): Promise<void> {
    const started = Date.now();
    for (let attempt = 0; w.received < blob.size; attempt++) {
      const headers: Record<string, string> = {};
      if (w.received > 0) headers.range = `bytes=${w.received}-`;
      const res = await this.send({
        method: 'GET',
        url: `/v2/${repo}/blobs/${blob.digest}`,
        headers,
        scopes: [`repository:${repo}:pull`],
        bulk: true,
        ...(cancel ? { cancel } : {}),
      });
      if (res.statusCode === 416) {
        await res.body.dump();
        // nothing after the bytes we have: the registry's blob is shorter than its descriptor
        throw new CpmError(
          'E_DIGEST',
          `blob ${blob.digest} from ${this.registry}/${repo} is shorter than its descriptor: the registry has no bytes after ${w.received}, the manifest says ${blob.size}`,
          {
            hint: 'the registry holds a truncated copy of this blob: push the image again, or use another mirror',
            context: { digest: blob.digest, received: w.received, expectedSize: blob.size },
          },
        );
      }
      if (res.statusCode === 206) {
        const start = /bytes (\d+)-/.exec(String(res.headers['content-range'] ?? ''))?.[1];
        if (Number(start) !== w.received) {
          await res.body.dump();
          await w.restart();
          continue;
        }
      } else {
        await this.expect(res, [200], `blob ${blob.digest}`);
        if (w.received > 0) {
          this.log(`GET blob ${blob.digest}: registry ignored Range, restarting`);
          await w.restart();
        }
      }
      const before = w.received;
      // bytes kept from an earlier attempt or run are shown, not counted as moved now
      progress?.rebase(w.received);
      if (progress) res.body.on('data', (c: Buffer) => progress.add(c.length));
      try {
        await streamPromises().pipeline(res.body, w.sink(), { signal: withCancel(cancel) });
      } catch (e) {
        // The resume offset is only known once the last write reached the file.
        await w.settle();
        throwIfCancelled(cancel);
        const wait = this.backoff(attempt);
        if (e instanceof CpmError || attempt >= this.retries || !this.withinBudget(started, wait))
          throw this.netError(e, `blob ${blob.digest}`);
        this.log(
          `GET blob ${blob.digest}: interrupted at ${w.received} bytes (${errCode(e) ?? 'error'}), resuming`,
        );
        await sleep(wait, cancel);
        continue;
      }
      if (w.received < blob.size) {
        if (w.received === before && attempt >= this.retries)
          throw new CpmError(
            'E_DIGEST',
            `blob ${blob.digest} from ${this.registry}/${repo} is shorter than its descriptor: the registry sent ${w.received} of ${blob.size} bytes`,
            {
              hint: 'the registry holds a truncated copy of this blob: push the image again, or use another mirror',
              context: { digest: blob.digest, received: w.received, expectedSize: blob.size },
            },
          );
        this.log(
          `GET blob ${blob.digest}: body ended at ${w.received}/${blob.size} bytes, resuming`,
        );
      }
    }
  }

  /**
   * Uploads a stored blob unless the registry has it: HEAD, then mount from `mountFrom` when
   * given, else a monolithic PUT (or PATCH chunks with `chunkSize`).
   */
  async pushBlob(
    repo: string,
    blob: BlobRef,
    store: BlobStore,
    opts: PushBlobOptions = {},
  ): Promise<PushBlobResult> {
    if ((await this.hasBlob(repo, blob.digest)) !== undefined) return 'exists';
    const file = store.path(blob.digest);
    for (let attempt = 0; ; attempt++) {
      try {
        let query = '';
        const scopes = [`repository:${repo}:pull,push`];
        if (opts.mountFrom && opts.mountFrom !== repo) {
          query = `?mount=${encodeURIComponent(blob.digest)}&from=${encodeURIComponent(opts.mountFrom)}`;
          scopes.push(`repository:${opts.mountFrom}:pull`);
        }
        const start = await this.send({
          method: 'POST',
          url: `/v2/${repo}/blobs/uploads/${query}`,
          scopes,
        });
        if (start.statusCode === 201) {
          await start.body.dump();
          return 'mounted';
        }
        await this.expect(start, [202], `start upload to ${repo}`);
        await start.body.dump();
        let location = this.location(start.headers.location, `upload to ${repo}`);
        const push = [`repository:${repo}:pull,push`];
        if (opts.chunkSize && opts.chunkSize > 0 && blob.size > 0) {
          for (let off = 0; off < blob.size; off += opts.chunkSize) {
            const end = Math.min(off + opts.chunkSize, blob.size) - 1;
            const res = await this.send({
              method: 'PATCH',
              url: location,
              headers: {
                'content-type': 'application/octet-stream',
                'content-length': String(end - off + 1),
                'content-range': `${off}-${end}`,
              },
              body: () => createReadStream(file, { start: off, end }),
              bulk: true,
              scopes: push,
              noRetry: true,
            });
            await this.expect(res, [202], `upload chunk to ${repo}`);
            await res.body.dump();
            location = this.location(res.headers.location, `upload to ${repo}`);
          }
          const fin = await this.send({
            method: 'PUT',
            url: withQuery(location, 'digest', blob.digest),
            headers: { 'content-length': '0' },
            scopes: push,
            noRetry: true,
          });
          await this.expect(fin, [201], `finish upload to ${repo}`);
          await fin.body.dump();
        } else {
          const res = await this.send({
            method: 'PUT',
            url: withQuery(location, 'digest', blob.digest),
            headers: {
              'content-type': 'application/octet-stream',
              'content-length': String(blob.size),
            },
            body: () => createReadStream(file, { highWaterMark: 1 << 20 }),
            bulk: true,
            scopes: push,
            noRetry: true,
          });
          await this.expect(res, [201], `upload ${blob.digest} to ${repo}`);
          await res.body.dump();
        }
        return 'uploaded';
      } catch (e) {
        if (!this.retryable(e) || attempt >= this.retries) throw e;
        this.log(`upload ${blob.digest} to ${repo} failed (${(e as Error).message}), restarting`);
        await sleep(this.backoff(attempt));
      }
    }
  }

  /** All tags of `repo`, following Link: <...>; rel="next" pagination. */
  async listTags(repo: string, pageSize = 1000): Promise<string[]> {
    const tags: string[] = [];
    let url: string | undefined = `/v2/${repo}/tags/list?n=${pageSize}`;
    while (url) {
      const res = await this.send({ method: 'GET', url, scopes: [`repository:${repo}:pull`] });
      if (res.statusCode === 404) {
        await res.body.dump();
        return tags;
      }
      await this.expect(res, [200], `tags of ${repo}`);
      const page = (await this.jsonOf(res, `tags of ${repo}`)) as { tags?: string[] | null } | null;
      tags.push(...(page?.tags ?? []));
      const link = res.headers.link;
      const m = typeof link === 'string' ? /<([^>]+)>\s*;\s*rel="?next"?/.exec(link) : null;
      url = m ? m[1] : undefined;
    }
    return tags;
  }

  // ---- transport ----------------------------------------------------------------------------

  private resolve(u: string): string {
    return /^https?:\/\//.test(u) ? u : this.baseUrl + (u.startsWith('/') ? u : `/${u}`);
  }

  private location(h: string | string[] | undefined, what: string): string {
    const v = Array.isArray(h) ? h[0] : h;
    if (!v) throw new CpmError('E_REGISTRY', `${this.registry}: ${what}: no Location header`);
    return new URL(v, this.baseUrl + '/').toString();
  }

  /** Whether another attempt after `wait` ms still fits the total retry time. */
  private withinBudget(started: number, wait: number): boolean {
    return Date.now() - started + wait < this.retryBudgetMs;
  }

  private backoff(attempt: number): number {
    return Math.min(this.retryBaseMs * 2 ** attempt, this.maxRetryDelayMs);
  }

  private retryable(e: unknown): boolean {
    if (e instanceof CpmError)
      return (
        e.code === 'E_NETWORK' ||
        (e.code === 'E_REGISTRY' && RETRYABLE_STATUS(Number(e.context.status)))
      );
    return isRetryableNetError(e);
  }

  private netError(e: unknown, what: string): CpmError {
    if (e instanceof CpmError) return e;
    const code = errCode(e) ?? 'error';
    const tls = isTlsError(e);
    const timeout = TIMEOUT_CODES[code];
    const secs = (ms: number): string => `${Math.round(ms / 100) / 10} s`;
    const detail =
      timeout === 'connect'
        ? `no connection within ${secs(this.connectTimeoutMs)} (connect timeout)`
        : timeout === 'idle'
          ? `no data for ${secs(this.idleTimeoutMs)} (idle timeout)`
          : `${code}: ${(e as Error).message}`;
    return new CpmError('E_NETWORK', `${this.registry}: ${what}: ${detail}`, {
      hint: tls
        ? `TLS with ${this.baseUrl} failed: trust its CA with --ca-file (repository: ca_file), or --no-tls-verify; a plain-http registry needs --plain-http`
        : timeout
          ? `check that the registry is reachable; cpm retried for up to ${secs(this.retryBudgetMs)} — the limits are network.connect_timeout, idle_timeout and retry_budget in cpm.yaml (or CPM_CONNECT_TIMEOUT, CPM_IDLE_TIMEOUT, CPM_RETRY_BUDGET)`
          : code === 'ENOTFOUND'
            ? `the host name ${this.registry.replace(/:\d+$/, '')} does not resolve: check its spelling and the machine's DNS`
            : 'check that the registry is reachable; cpm retried with backoff',
      context: { registry: this.registry },
      cause: e,
    });
  }

  /** Sends with auth, retries and redirects. The caller consumes or dumps the body. */
  private async send(req: Req): Promise<HttpResponse> {
    let authTried = false;
    let url = this.resolve(req.url);
    const started = Date.now();
    for (let attempt = 0; ;) {
      throwIfCancelled(req.cancel);
      const headers: Record<string, string> = { ...(req.headers ?? {}) };
      const sameHost = new URL(url).host === new URL(this.baseUrl).host;
      const auth = sameHost ? this.authHeader(req.scopes) : undefined;
      if (auth) headers.authorization = auth;
      let res: HttpResponse;
      try {
        const signal = withCancel(req.cancel);
        if (req.bulk) {
          res = await request(url, {
            method: req.method,
            headers,
            body: req.body?.() ?? null,
            dispatcher: this.dispatcher,
            highWaterMark: 1 << 20,
            signal,
          });
        } else {
          res = await this.small.request(url, {
            method: req.method,
            headers,
            body: req.body?.(),
            signal,
          });
        }
      } catch (e) {
        throwIfCancelled(req.cancel);
        const wait = this.backoff(attempt);
        if (
          !req.noRetry &&
          attempt < this.retries &&
          isRetryableNetError(e) &&
          this.withinBudget(started, wait)
        ) {
          this.log(`${req.method} ${showUrl(url)} -> ${errCode(e)}, retrying`);
          attempt++;
          await sleep(wait, req.cancel);
          continue;
        }
        throw this.netError(e, `${req.method} ${showUrl(url)}`);
      }
      const status = res.statusCode;
      this.log(`${req.method} ${showUrl(url)} -> ${status}`);
      if (status === 401 && !authTried && sameHost) {
        authTried = true;
        const ch = res.headers['www-authenticate'];
        await res.body.dump();
        if (typeof ch === 'string' && (await this.authenticate(ch, req.scopes))) continue;
        throw this.authError(req, url);
      }
      if ([301, 302, 303, 307, 308].includes(status) && res.headers.location) {
        await res.body.dump();
        url = new URL(String(res.headers.location), url).toString();
        continue;
      }
      if (RETRYABLE_STATUS(status) && !req.noRetry && attempt < this.retries) {
        const ra = res.headers['retry-after'];
        let wait = this.backoff(attempt);
        if (typeof ra === 'string') {
          const secs = Number(ra);
          const at = Number.isFinite(secs) ? secs * 1000 : Date.parse(ra) - Date.now();
          if (Number.isFinite(at)) wait = Math.max(0, Math.min(at, this.maxRetryDelayMs));
        }
        if (!this.withinBudget(started, wait)) return res;
        await res.body.dump();
        attempt++;
        this.log(`${req.method} ${showUrl(url)} -> ${status}, retrying in ${wait} ms`);
        await sleep(wait, req.cancel);
        continue;
      }
      return res;
    }
  }

  private authHeader(scopes: string[]): string | undefined {
    const h = this.hostAuth;
    if (!h) return undefined;
    if (h.scheme === 'basic') return this.creds ? basicHeader(this.creds) : undefined;
    const t = this.tokens.get(this.tokenKey(h, scopes));
    return t && t.expires > Date.now() ? `Bearer ${t.token}` : undefined;
  }

  private tokenKey(h: HostAuth, scopes: string[]): string {
    return `${h.realm}|${h.service ?? ''}|${[...scopes].sort().join(' ')}`;
  }

  /** Handles a 401 challenge; returns false when there is nothing new to try. */
  private async authenticate(header: string, scopes: string[]): Promise<boolean> {
    const ch = parseChallenge(header);
    if (!ch) return false;
    if (ch.scheme === 'basic') {
      this.hostAuth = { scheme: 'basic' };
      return this.creds !== undefined;
    }
    if (ch.scheme !== 'bearer' || !ch.params.realm) return false;
    const h: HostAuth = { scheme: 'bearer', realm: ch.params.realm };
    if (ch.params.service !== undefined) h.service = ch.params.service;
    this.hostAuth = h;
    const want = new Set(scopes);
    if (ch.params.scope) for (const s of ch.params.scope.split(' ')) want.add(s);
    const all = [...want];
    const u = new URL(h.realm!);
    if (h.service) u.searchParams.set('service', h.service);
    for (const s of all) u.searchParams.append('scope', s);
    const headers: Record<string, string> = {};
    if (this.creds) {
      headers.authorization = basicHeader(this.creds);
      u.searchParams.set('account', this.creds.username);
    }
    let res: HttpResponse;
    try {
      res = await this.small.request(u, { method: 'GET', headers });
    } catch (e) {
      throw this.netError(e, `token request to ${u.host}`);
    }
    this.log(`GET token ${u.host}${u.pathname} -> ${res.statusCode}`);
    if (res.statusCode !== 200) {
      await res.body.dump();
      throw new CpmError(
        'E_AUTH',
        `${this.registry}: token server refused (${res.statusCode}) for ${all.join(' ')}`,
        {
          hint: this.creds
            ? `check the credentials (cpm login ${this.registry})`
            : `log in first: cpm login ${this.registry}`,
          context: { registry: this.registry, status: res.statusCode },
        },
      );
    }
    const body = (await this.jsonOf(res, `token request to ${u.host}`)) as {
      token?: string;
      access_token?: string;
      expires_in?: number;
    } | null;
    const token = body?.token ?? body?.access_token;
    if (!token) throw new CpmError('E_AUTH', `${this.registry}: token server returned no token`);
    // Renew a little early so a token never expires mid-request.
    const ttl = Math.max(10, (body?.expires_in ?? 60) - 5) * 1000;
    const entry = { token, expires: Date.now() + ttl };
    this.tokens.set(this.tokenKey(h, scopes), entry);
    this.tokens.set(this.tokenKey(h, all), entry);
    return true;
  }

  private authError(req: Req, url: string): CpmError {
    return new CpmError(
      'E_AUTH',
      `${this.registry}: ${req.method} ${showUrl(url)}: authentication required or refused`,
      {
        hint: this.creds
          ? `check the credentials (cpm login ${this.registry})`
          : `log in first: cpm login ${this.registry}`,
        context: { registry: this.registry, status: 401 },
      },
    );
  }

  /**
   * A small body read whole, at most `limit` bytes whether or not a Content-Length announces it
   * (a chunked answer has none): a connection that fails or goes silent within it is E_NETWORK
   * naming the registry, as it is before the headers (not an internal error).
   */
  private async bodyOf(res: HttpResponse, what: string, limit = MAX_SMALL_BODY): Promise<Buffer> {
    const tooLarge = (n: number): CpmError =>
      new CpmError('E_REGISTRY', `${this.registry}: ${what} is too large (${n} bytes)`, {
        context: { registry: this.registry },
        hint: `cpm reads at most ${limit} bytes here`,
      });
    const announced = Number(res.headers['content-length'] ?? 0);
    if (announced > limit) {
      await res.body.dump();
      throw tooLarge(announced);
    }
    const parts: Buffer[] = [];
    let n = 0;
    try {
      for await (const c of res.body) {
        n += (c as Buffer).length;
        if (n > limit) break;
        parts.push(c as Buffer);
      }
    } catch (e) {
      throw this.netError(e, what);
    }
    if (n > limit) {
      res.body.destroy();
      throw tooLarge(n);
    }
    return Buffer.concat(parts);
  }

  /** A small JSON body (bodyOf); one that is not JSON is the registry's E_REGISTRY. */
  private async jsonOf(res: HttpResponse, what: string): Promise<unknown> {
    const bytes = await this.bodyOf(res, what);
    try {
      return JSON.parse(bytes.toString('utf8')) as unknown;
    } catch {
      throw new CpmError('E_REGISTRY', `${this.registry}: ${what}: the answer is not JSON`, {
        context: { registry: this.registry },
      });
    }
  }

  /** Throws the registry's error (JSON errors[] when present) unless the status is expected. */
  private async expect(res: HttpResponse, ok: number[], what: string): Promise<void> {
    if (ok.includes(res.statusCode)) return;
    let detail = '';
    try {
      const text = (await res.body.text()).slice(0, 2000);
      const j = JSON.parse(text) as { errors?: Array<{ code?: string; message?: string }> };
      detail = (j.errors ?? [])
        .map((e) => `${e.code ?? ''}${e.message ? `: ${e.message}` : ''}`)
        .join('; ');
    } catch {
      /* not JSON: the status says enough */
    }
    const s = res.statusCode;
    const code: ErrorCode =
      s === 401 || s === 403 ? 'E_AUTH' : s === 404 ? 'E_NOT_FOUND' : 'E_REGISTRY';
    throw new CpmError(
      code,
      `${this.registry}: ${what}: HTTP ${s}${detail ? ` (${detail})` : ''}`,
      {
        context: { registry: this.registry, status: s },
        // credentials were sent and refused (401), or do not reach this repository (403)
        ...(code === 'E_AUTH'
          ? {
              hint: this.creds
                ? `check the credentials (cpm login ${this.registry})`
                : `log in first: cpm login ${this.registry}`,
            }
          : {}),
      },
    );
  }
}

function withQuery(url: string, key: string, value: string): string {
  const u = new URL(url);
  u.searchParams.set(key, value);
  return u.toString();
}
