#!/usr/bin/env node
// Runs the benchmarks: every bench/<area>/run.ts (and noop.ts, the no-op install; big-root.ts,
// transactions on the Debian root, which skips without its image; luet.ts, trees against luet,
// which skips without luet), one after the other, each printing its own table (cpm
// against a baseline measured in the same run).
// `npm run bench -- [AREA...] [--quick]`.
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const areas = readdirSync(here, { withFileTypes: true })
  .filter((d) => d.isDirectory() && existsSync(path.join(here, d.name, 'run.ts')))
  .map((d) => d.name)
  .sort();

const argv = process.argv.slice(2);
const wanted = argv.filter((a) => !a.startsWith('-'));
const flags = argv.filter((a) => a.startsWith('-'));
for (const w of wanted) {
  if (!areas.includes(w)) {
    process.stderr.write(`bench: unknown area "${w}" (have: ${areas.join(', ')})\n`);
    process.exit(2);
  }
}

const tsx = path.join(here, '..', 'node_modules', '.bin', 'tsx');
let failed = 0;
for (const area of wanted.length > 0 ? wanted : areas) {
  for (const entry of ['run.ts', 'noop.ts', 'big-root.ts', 'luet.ts']) {
    const file = path.join(here, area, entry);
    if (!existsSync(file)) continue;
    // noop.ts and big-root.ts take a run count, not the flags
    const args = entry === 'noop.ts' || entry === 'big-root.ts' ? [] : flags;
    process.stdout.write(`\n=== bench/${area}/${entry} ${args.join(' ')}\n`);
    const r = spawnSync(tsx, [file, ...args], { stdio: 'inherit' });
    if (r.status !== 0) {
      failed++;
      process.stderr.write(`bench/${area}/${entry} failed (exit ${r.status ?? r.signal})\n`);
    }
  }
}
process.exit(failed > 0 ? 1 : 0);
