/**
 * Child process for the crash-consistency test: runs one transaction described on argv and exits.
 * The parent sets CPM_FAULT_AT so this process SIGKILLs itself at a chosen filesystem operation.
 */
import { reportError } from '../../src/cli/output.js';
import { applyTransaction, fileLayer } from '../../src/rootfs/index.js';
import type { InstallStep } from '../../src/rootfs/types.js';

interface Job {
  root: string;
  install: Array<
    Omit<InstallStep, 'layers'> & {
      layers: Array<{ file: string; mediaType: string; digest: string }>;
    }
  >;
  remove: string[];
}

const job = JSON.parse(process.argv[2]!) as Job;
// errors end as the CLI ends them: a message and the documented exit code
await applyTransaction(
  job.root,
  {
    install: job.install.map((s) => ({
      ...s,
      layers: s.layers.map((l) => fileLayer(l.file, l.mediaType, l.digest)),
    })),
    remove: job.remove,
  },
  { noFinalizers: true },
).catch((e: unknown) => process.exit(reportError(e)));
