/**
 * Built-in modules that only some runs need, loaded when first used: a no-op install spawns
 * nothing and reads no lines, and loading node:child_process (with net and dgram behind it) and
 * node:readline costs ≈ 15 ms of a ≈ 150 ms command (docs/performance.md, "No-op install").
 * node:net: only a stale root lock's takeover listens on a socket. node:http/https: only a run
 * that talks to a registry. node:crypto, node:stream and node:zlib: 10–15 ms together on Node 24
 * (7–10 on Node 20), and a no-op install needs none of them (small sums: util/sha256.ts; a
 * repository's gzip index is the one use of zlib there).
 */
import type * as ChildProcess from 'node:child_process';
import type * as Crypto from 'node:crypto';
import type * as Http from 'node:http';
import type * as Https from 'node:https';
import type * as Net from 'node:net';
import type * as Readline from 'node:readline';
import type * as StreamPromises from 'node:stream/promises';
import type * as Zlib from 'node:zlib';

export const childProcess = (): typeof ChildProcess =>
  process.getBuiltinModule('node:child_process');

export const readline = (): typeof Readline => process.getBuiltinModule('node:readline');

export const net = (): typeof Net => process.getBuiltinModule('node:net');

export const http = (): typeof Http => process.getBuiltinModule('node:http');

export const https = (): typeof Https => process.getBuiltinModule('node:https');

let cryptoModule: typeof Crypto | undefined;

export const nodeCrypto = (): typeof Crypto =>
  (cryptoModule ??= process.getBuiltinModule('node:crypto'));

/** Whether this process has asked for node:crypto yet (then its hash is the cheaper one). */
export const nodeCryptoLoaded = (): boolean => cryptoModule !== undefined;

// typeof import(): the module as getBuiltinModule types it (no default export)
export const stream = (): typeof import('node:stream') => process.getBuiltinModule('node:stream');

export const streamPromises = (): typeof StreamPromises =>
  process.getBuiltinModule('node:stream/promises');

export const zlib = (): typeof Zlib => process.getBuiltinModule('node:zlib');
