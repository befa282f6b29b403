/**
 * Built-in modules that only some runs need, loaded when first used: a no-op install spawns
 * nothing and reads no lines, and loading node:child_process (with net and dgram behind it) and
 * node:readline costs ≈ 15 ms of a ≈ 150 ms command (docs/performance.md, "No-op install").
 * node:net: only a stale root lock's takeover listens on a socket. node:http/https: only a run
 * that talks to a registry.
 */
import type * as ChildProcess from 'node:child_process';
import type * as Http from 'node:http';
import type * as Https from 'node:https';
import type * as Net from 'node:net';
import type * as Readline from 'node:readline';

export const childProcess = (): typeof ChildProcess =>
  process.getBuiltinModule('node:child_process');

export const readline = (): typeof Readline => process.getBuiltinModule('node:readline');

export const net = (): typeof Net => process.getBuiltinModule('node:net');

export const http = (): typeof Http => process.getBuiltinModule('node:http');

export const https = (): typeof Https => process.getBuiltinModule('node:https');
