/** Platform selection for image indexes / manifest lists. Default: linux + the host's arch. */
import { CpmError } from '../errors.js';
import type { Descriptor, Platform } from './types.js';

const NODE_TO_GO_ARCH: Record<string, string> = {
  x64: 'amd64',
  arm64: 'arm64',
  arm: 'arm',
  ia32: '386',
  ppc64: 'ppc64le',
  s390x: 's390x',
  riscv64: 'riscv64',
  loong64: 'loong64',
};

export function hostPlatform(): Platform {
  return { os: 'linux', architecture: NODE_TO_GO_ARCH[process.arch] ?? process.arch };
}

/** "os/arch[/variant]", e.g. "linux/arm64/v8". */
export function parsePlatform(s: string): Platform {
  const parts = s.split('/');
  if (parts.length < 2 || parts.length > 3 || parts.some((p) => p === '')) {
    throw new CpmError('E_USAGE', `invalid platform "${s}" (expected os/arch[/variant])`);
  }
  const p: Platform = { os: parts[0]!, architecture: parts[1]! };
  if (parts[2]) p.variant = parts[2];
  return p;
}

export function formatPlatform(p: Platform): string {
  return `${p.os}/${p.architecture}${p.variant ? `/${p.variant}` : ''}`;
}

/** The index entry matching `want`; E_NOT_FOUND listing what the index offers. */
export function selectPlatform(manifests: Descriptor[], want: Platform, what: string): Descriptor {
  const candidates = manifests.filter(
    (m) =>
      m.platform &&
      m.platform.os === want.os &&
      m.platform.architecture === want.architecture &&
      (want.variant === undefined || m.platform.variant === want.variant),
  );
  // arm64 images are often tagged v8 or untagged; prefer an exact or missing variant.
  candidates.sort((a, b) => Number(!!a.platform?.variant) - Number(!!b.platform?.variant));
  const hit = candidates[0];
  if (hit) return hit;
  const offered = manifests.map((m) => (m.platform ? formatPlatform(m.platform) : '(no platform)'));
  throw new CpmError('E_NOT_FOUND', `${what} has no image for ${formatPlatform(want)}`, {
    hint: `available: ${offered.join(', ') || '(none)'}; choose one with --platform`,
    context: { platform: formatPlatform(want) },
  });
}
