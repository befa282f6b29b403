/**
 * Shared bench input: bench/.work/debian-root.tar, a ≈500 MB Debian bookworm root ("standard" +
 * python3, git, vim) made once with mmdebstrap. A lock file lets concurrent benches wait for the
 * one creating it instead of building it twice.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, promises as fsp } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const BENCH_WORK = path.join(path.dirname(fileURLToPath(import.meta.url)), '.work');
export const DEBIAN_TAR = path.join(BENCH_WORK, 'debian-root.tar');
const LOCK = `${DEBIAN_TAR}.lock`;

/** Returns the tarball's path, creating it (or waiting for whoever creates it) when missing. */
export async function debianRootTar(): Promise<string> {
  const deadline = Date.now() + 30 * 60_000;
  while (existsSync(LOCK) && !existsSync(DEBIAN_TAR)) {
    if (Date.now() > deadline)
      throw new Error(`${LOCK} is still there after 30 min: stale? remove it`);
    console.log(`waiting for ${DEBIAN_TAR} (another process holds ${LOCK})…`);
    await new Promise((r) => setTimeout(r, 15_000));
  }
  if (existsSync(DEBIAN_TAR)) return DEBIAN_TAR;
  console.log(`creating ${DEBIAN_TAR} with mmdebstrap (a few minutes)…`);
  await fsp.mkdir(BENCH_WORK, { recursive: true });
  await fsp.writeFile(LOCK, `${process.pid}\n`);
  try {
    execFileSync(
      'mmdebstrap',
      [
        '--variant=standard',
        '--format=tar',
        '--include=python3,git,vim',
        'bookworm',
        `${DEBIAN_TAR}.tmp`,
      ],
      { stdio: 'inherit' },
    );
    await fsp.rename(`${DEBIAN_TAR}.tmp`, DEBIAN_TAR);
  } finally {
    await fsp.rm(LOCK, { force: true });
  }
  return DEBIAN_TAR;
}
