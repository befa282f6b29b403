/** A request handler serving the files under `dir` (GET and HEAD, 404 otherwise): the `http` repository type's server. */
import { promises as fsp } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import path from 'node:path';

export function serveFiles(dir: string): (req: IncomingMessage, res: ServerResponse) => void {
  return (req, res) => {
    const rel = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname);
    fsp.readFile(path.join(dir, path.normalize(rel))).then(
      (data) => {
        res.writeHead(200, { 'content-length': data.length });
        res.end(req.method === 'HEAD' ? undefined : data);
      },
      () => {
        res.writeHead(404);
        res.end();
      },
    );
  };
}
