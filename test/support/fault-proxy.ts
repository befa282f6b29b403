/**
 * An HTTP reverse proxy for fault injection between a client and a registry. Requests are
 * forwarded untouched (Host included, so the registry's Location headers point back at the
 * proxy) unless a rule matches; each rule fires `times` times (default 1).
 *
 *   const proxy = await startFaultProxy(registry.url);
 *   proxy.add({ method: 'GET', path: /\/blobs\/sha256:/, fault: { kind: 'reset', afterBytes: 1000 } });
 *   // client talks to proxy.host instead of registry.host
 */
import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

export type Fault =
  /** Answer with this status (and Retry-After) without contacting the registry. */
  | { kind: 'status'; status: number; retryAfter?: string }
  /** Forward, then reset the connection (TCP RST) after `afterBytes` body bytes. */
  | { kind: 'reset'; afterBytes: number }
  /** Forward, then close the connection cleanly after `afterBytes` body bytes (short body). */
  | { kind: 'truncate'; afterBytes: number }
  /** Forward the whole body with the byte at `atByte` flipped. */
  | { kind: 'corrupt'; atByte: number }
  /** Forward without the Range header (a registry that ignores Range). */
  | { kind: 'ignore-range' }
  /** Forward headers and `afterBytes` body bytes, then go silent with the connection open. */
  | { kind: 'stall'; afterBytes: number }
  /** Accept the request and never answer (no status line). */
  | { kind: 'hang' }
  /** Forward untouched, but only after `ms` (a slow registry). */
  | { kind: 'delay'; ms: number };

export interface FaultRule {
  method?: string;
  path: RegExp;
  fault: Fault;
  /** How many matching requests this rule affects (default 1; Infinity for all). */
  times?: number;
}

export interface ProxiedRequest {
  method: string;
  path: string;
  range?: string;
  status?: number;
  fault?: Fault['kind'];
}

export interface FaultProxy {
  host: string;
  url: string;
  /** Every request seen, in order. */
  requests: ProxiedRequest[];
  add(rule: FaultRule): void;
  /** Drops remaining rules and the request log. */
  reset(): void;
  stop(): Promise<void>;
}

export async function startFaultProxy(targetUrl: string): Promise<FaultProxy> {
  const target = new URL(targetUrl);
  let rules: Array<FaultRule & { left: number }> = [];
  const requests: ProxiedRequest[] = [];
  const sockets = new Set<Socket>();

  const take = (method: string, p: string): Fault | undefined => {
    const r = rules.find((x) => x.left > 0 && (!x.method || x.method === method) && x.path.test(p));
    if (!r) return undefined;
    r.left--;
    return r.fault;
  };

  const server = http.createServer((req, res) => {
    const method = req.method ?? 'GET';
    const p = req.url ?? '/';
    const fault = take(method, p);
    const entry: ProxiedRequest = { method, path: p };
    if (typeof req.headers.range === 'string') entry.range = req.headers.range;
    if (fault) entry.fault = fault.kind;
    requests.push(entry);
    if (fault?.kind === 'hang') {
      req.resume();
      return; // the socket stays open until the client gives up or stop() destroys it
    }
    if (fault?.kind === 'status') {
      req.resume();
      entry.status = fault.status;
      const h: Record<string, string> = { 'content-type': 'application/json' };
      if (fault.retryAfter !== undefined) h['retry-after'] = fault.retryAfter;
      res
        .writeHead(fault.status, h)
        .end('{"errors":[{"code":"INJECTED","message":"fault proxy"}]}');
      return;
    }
    if (fault?.kind === 'delay') {
      req.pause();
      setTimeout(() => forward(undefined), fault.ms);
      return;
    }
    forward(fault);

    function forward(fault: Exclude<Fault, { kind: 'delay' }> | undefined): void {
      const headers = { ...req.headers };
      if (fault?.kind === 'ignore-range') delete headers.range;
      const up = http.request(
        { host: target.hostname, port: target.port, method, path: p, headers },
        (ur) => {
          entry.status = ur.statusCode;
          res.writeHead(ur.statusCode ?? 502, ur.headers);
          if (fault?.kind === 'reset' || fault?.kind === 'truncate') {
            let sent = 0;
            let cut = false;
            const cutNow = (): void => {
              if (cut) return;
              cut = true;
              ur.destroy();
              const sock = res.socket;
              res.flushHeaders();
              // Flush what was written, then cut: RST for reset, FIN for truncate.
              if (fault.kind === 'reset') setTimeout(() => sock?.resetAndDestroy(), 20);
              else setTimeout(() => sock?.end(), 20);
            };
            if (fault.afterBytes <= 0) return cutNow();
            ur.on('data', (chunk: Buffer) => {
              if (cut) return;
              const part = chunk.subarray(0, fault.afterBytes - sent);
              sent += part.length;
              res.write(part);
              if (sent >= fault.afterBytes) cutNow();
            });
            // A body shorter than afterBytes: the fault still fires at its end.
            ur.on('end', cutNow);
            return;
          }
          if (fault?.kind === 'stall') {
            let sent = 0;
            ur.on('data', (chunk: Buffer) => {
              const part = chunk.subarray(0, Math.max(0, fault.afterBytes - sent));
              sent += part.length;
              if (part.length > 0) res.write(part);
              if (sent >= fault.afterBytes) ur.destroy(); // nothing more, and no end either
            });
            return;
          }
          if (fault?.kind === 'corrupt') {
            let pos = 0;
            ur.on('data', (chunk: Buffer) => {
              if (fault.atByte >= pos && fault.atByte < pos + chunk.length) {
                const c = Buffer.from(chunk);
                c[fault.atByte - pos] = c[fault.atByte - pos]! ^ 0xff;
                chunk = c;
              }
              pos += chunk.length;
              res.write(chunk);
            });
            ur.on('end', () => res.end());
            return;
          }
          ur.pipe(res);
        },
      );
      up.on('error', () => res.destroy());
      req.pipe(up);
    }
  });
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  return {
    host: `127.0.0.1:${port}`,
    url: `http://127.0.0.1:${port}`,
    requests,
    add(rule) {
      rules.push({ ...rule, left: rule.times ?? 1 });
    },
    reset() {
      rules = [];
      requests.length = 0;
    },
    stop: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}
