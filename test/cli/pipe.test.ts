/**
 * Output through a real pipe is never cut short: bin/cpm.js used to call process.exit() while the
 * pipe still held unread output, truncating it at the pipe's 64 KiB buffer.
 */
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const PROJECT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const BIN = join(PROJECT, 'bin/cpm.js');

/** A tree whose `tree list --json` is well above 1 MB. */
function bigTree(n: number): string {
  const root = join(mkdtempSync(join(tmpdir(), 'cpm-pipe-')), 'packages');
  mkdirSync(join(root, 'big'), { recursive: true });
  const desc = 'x'.repeat(400);
  const lines = ['packages:'];
  for (let i = 0; i < n; i++)
    lines.push(`  - {name: p${i}, category: big, version: "1.${i}", description: "${desc}"}`);
  writeFileSync(join(root, 'big/collection.yaml'), lines.join('\n') + '\n');
  return root;
}

describe('stdout to a pipe', () => {
  it('delivers more than 1 MB of JSON to a slow reader, whole', async () => {
    const tree = bigTree(3000);
    const child = spawn('node', [BIN, 'tree', 'list', '--json', '--tree', tree], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    // Read nothing for a while, so the pipe fills and cpm finishes before the reader drains it.
    child.stdout.pause();
    const chunks: Buffer[] = [];
    child.stdout.on('data', (c: Buffer) => chunks.push(c));
    const exited = new Promise<number>((res) => child.on('exit', (c) => res(c ?? -1)));
    await new Promise((r) => setTimeout(r, 1500));
    child.stdout.resume();
    const closed = new Promise((res) => child.stdout.on('end', res));
    const [code] = await Promise.all([exited, closed]);
    const out = Buffer.concat(chunks);
    expect(code).toBe(0);
    expect(out.length).toBeGreaterThan(1 << 20);
    const list = JSON.parse(out.toString('utf8')) as { packages: Array<{ id: string }> };
    expect(list.packages).toHaveLength(3000);
  }, 60_000);
});
