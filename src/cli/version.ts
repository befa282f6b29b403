/** cpm's version: baked in by the bundlers (build/bundle.mjs, build/sea.mjs), else package.json. */
import { readFileSync } from 'node:fs';

declare const __CPM_VERSION__: string | undefined;

export function version(): string {
  if (typeof __CPM_VERSION__ === 'string') return __CPM_VERSION__;
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as {
    version: string;
  };
  return pkg.version;
}
