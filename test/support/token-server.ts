/**
 * A tiny Docker-registry token server for tests: GET /token?service=&scope=… with optional Basic
 * auth answers a JWT (RS256) signed with a throw-away key whose self-signed certificate the
 * registry trusts (`auth.token.rootcertbundle`). Records every request for assertions.
 */
import { createHash, createPrivateKey, createPublicKey, sign, type KeyObject } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import http from 'node:http';
import path from 'node:path';

export interface TokenRequest {
  account: string | undefined;
  scopes: string[];
  /** false when the Basic credentials were wrong (answered 401). */
  authenticated: boolean;
}

export interface TokenServerOptions {
  /** Directory for the key and certificate. */
  dir: string;
  /** user → password; authenticated users get every action they ask for. */
  users: Record<string, string>;
  /** Grant `pull` to anonymous callers (default false: anonymous get no access). */
  anonymousPull?: boolean;
  service?: string;
  issuer?: string;
  /** Token lifetime in seconds (default 300). */
  expiresIn?: number;
}

export interface TokenServer {
  realm: string;
  service: string;
  issuer: string;
  /** PEM certificate for the registry's rootcertbundle. */
  certFile: string;
  requests: TokenRequest[];
  stop(): Promise<void>;
}

const b64url = (b: Buffer | string): string => Buffer.from(b).toString('base64url');

/** libtrust key id: base32(sha256(DER SPKI)[:30]) in 4-char groups — what distribution matches `kid` against. */
function libtrustKeyId(pub: KeyObject): string {
  const der = pub.export({ type: 'spki', format: 'der' });
  const sum = createHash('sha256').update(der).digest().subarray(0, 30);
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  let bits = 0;
  let value = 0;
  let out = '';
  for (const byte of sum) {
    value = (value << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      out += alphabet[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  return out.match(/.{4}/g)!.join(':');
}

export async function startTokenServer(opts: TokenServerOptions): Promise<TokenServer> {
  await fsp.mkdir(opts.dir, { recursive: true });
  const keyFile = path.join(opts.dir, 'token.key');
  const certFile = path.join(opts.dir, 'token.crt');
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-keyout',
      keyFile,
      '-out',
      certFile,
      '-days',
      '2',
      '-subj',
      '/CN=cpm-test-token',
    ],
    { stdio: 'ignore' },
  );
  const key = createPrivateKey(await fsp.readFile(keyFile));
  const kid = libtrustKeyId(createPublicKey(key));
  const service = opts.service ?? 'cpm-test-registry';
  const issuer = opts.issuer ?? 'cpm-test-issuer';
  const requests: TokenRequest[] = [];

  const server = http.createServer((req, res) => {
    const u = new URL(req.url ?? '/', 'http://x');
    const scopes = u.searchParams
      .getAll('scope')
      .flatMap((s) => s.split(' '))
      .filter(Boolean);
    let account: string | undefined;
    let authenticated = false;
    const auth = req.headers.authorization;
    if (auth?.startsWith('Basic ')) {
      const plain = Buffer.from(auth.slice(6), 'base64').toString();
      const i = plain.indexOf(':');
      account = plain.slice(0, i);
      if (opts.users[account] === undefined || opts.users[account] !== plain.slice(i + 1)) {
        requests.push({ account, scopes, authenticated: false });
        res
          .writeHead(401, { 'content-type': 'application/json' })
          .end('{"details":"bad credentials"}');
        return;
      }
      authenticated = true;
    }
    requests.push({ account, scopes, authenticated });
    const access = scopes.flatMap((s) => {
      const [type, name, actions] = s.split(':');
      if (type !== 'repository' || !name || !actions) return [];
      const granted = authenticated
        ? actions.split(',')
        : opts.anonymousPull
          ? ['pull'].filter((a) => actions.includes(a))
          : [];
      return granted.length ? [{ type, name, actions: granted }] : [];
    });
    const now = Math.floor(Date.now() / 1000);
    const expiresIn = opts.expiresIn ?? 300;
    const header = { typ: 'JWT', alg: 'RS256', kid };
    const claims = {
      iss: issuer,
      sub: account ?? '',
      aud: service,
      exp: now + expiresIn,
      nbf: now - 10,
      iat: now,
      jti: `${now}-${requests.length}`,
      access,
    };
    const input = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(claims))}`;
    const token = `${input}.${b64url(sign('sha256', Buffer.from(input), key))}`;
    res.writeHead(200, { 'content-type': 'application/json' }).end(
      JSON.stringify({
        token,
        access_token: token,
        expires_in: expiresIn,
        issued_at: new Date().toISOString(),
      }),
    );
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const addr = server.address() as { port: number };
  return {
    realm: `http://127.0.0.1:${addr.port}/token`,
    service,
    issuer,
    certFile,
    requests,
    stop: () => new Promise<void>((r) => server.close(() => r())),
  };
}
