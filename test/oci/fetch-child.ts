/**
 * Child of the shared-cache tests: waits until the file `go` exists (so siblings start together),
 * then downloads one blob from the registry into the blob store at `storeDir`. Exit 0 when the
 * blob is stored, 1 with the error on stderr otherwise; progress notes go to stderr too.
 */
import { existsSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { BlobStore } from '../../src/oci/blobstore.js';
import { RegistryClient } from '../../src/oci/registry.js';

const [host, repo, digest, size, storeDir, go] = process.argv.slice(2) as [
  string,
  string,
  string,
  string,
  string,
  string,
];
while (!existsSync(go)) await sleep(2);
const client = new RegistryClient(host, { credentials: null, idleTimeoutMs: 60_000 });
try {
  // notes (waiting for another process) go to stderr, as a reporter's lines would
  const progress = {
    add: () => undefined,
    rebase: () => undefined,
    note: (m: string) => void process.stderr.write(`${m}\n`),
  };
  await client.fetchBlob(repo, { digest, size: Number(size) }, new BlobStore(storeDir), progress);
  process.stdout.write('stored\n');
} catch (e) {
  process.stderr.write(`${(e as Error).message}\n`);
  process.exitCode = 1;
} finally {
  await client.close();
}
