/**
 * Image references. Two kinds:
 *  - registry: `HOST[:PORT]/REPO[:TAG][@sha256:...]` (optionally prefixed `docker://`). The host
 *    is always explicit — cpm has no default registry.
 *  - layout: `oci:DIR[:TAG]` — an OCI image layout directory (skopeo/umoci syntax).
 */
import { CpmError } from '../errors.js';
import { isDigest } from './digest.js';

export interface RegistryRef {
  kind: 'registry';
  /** host[:port] as written (lower-cased). */
  registry: string;
  repository: string;
  tag?: string;
  digest?: string;
}

export interface LayoutRef {
  kind: 'layout';
  dir: string;
  tag?: string;
}

export type ImageRef = RegistryRef | LayoutRef;

const REPO_RE =
  /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:\/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$/;
const TAG_RE = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$/;

function usage(msg: string, input: string): CpmError {
  return new CpmError('E_USAGE', `invalid image reference "${input}": ${msg}`, {
    hint: 'use HOST[:PORT]/REPO[:TAG][@sha256:...] or oci:DIR[:TAG]',
    context: { ref: input },
  });
}

export function isValidTag(tag: string): boolean {
  return TAG_RE.test(tag);
}

export function parseRegistryRef(input: string): RegistryRef {
  let s = input.startsWith('docker://') ? input.slice('docker://'.length) : input;
  let digest: string | undefined;
  const at = s.indexOf('@');
  if (at >= 0) {
    digest = s.slice(at + 1);
    s = s.slice(0, at);
    if (!isDigest(digest)) throw usage(`"${digest}" is not a sha256 digest`, input);
  }
  const slash = s.indexOf('/');
  if (slash < 0) throw usage('no registry host', input);
  const host = s.slice(0, slash).toLowerCase();
  if (!(host.includes('.') || host.includes(':') || host === 'localhost' || host.startsWith('['))) {
    throw usage(
      `"${host}" does not look like a registry host (cpm has no default registry)`,
      input,
    );
  }
  let repo = s.slice(slash + 1);
  let tag: string | undefined;
  const colon = repo.lastIndexOf(':');
  if (colon >= 0) {
    tag = repo.slice(colon + 1);
    repo = repo.slice(0, colon);
    if (!TAG_RE.test(tag)) throw usage(`invalid tag "${tag}"`, input);
  }
  if (!REPO_RE.test(repo)) throw usage(`invalid repository name "${repo}"`, input);
  const ref: RegistryRef = { kind: 'registry', registry: host, repository: repo };
  if (tag !== undefined) ref.tag = tag;
  if (digest !== undefined) ref.digest = digest;
  return ref;
}

/** `oci:DIR[:TAG]`; a tag never contains "/", which tells it apart from a path with ":". */
export function parseLayoutRef(input: string): LayoutRef {
  if (!input.startsWith('oci:')) throw usage('layout references start with "oci:"', input);
  const rest = input.slice(4);
  const colon = rest.lastIndexOf(':');
  if (colon > 0 && !rest.slice(colon + 1).includes('/')) {
    const tag = rest.slice(colon + 1);
    if (tag === '') return { kind: 'layout', dir: rest.slice(0, colon) };
    return { kind: 'layout', dir: rest.slice(0, colon), tag };
  }
  if (rest === '') throw usage('empty directory', input);
  return { kind: 'layout', dir: rest };
}

export function parseImageRef(input: string): ImageRef {
  return input.startsWith('oci:') ? parseLayoutRef(input) : parseRegistryRef(input);
}

/** The reference to ask a registry for: digest wins over tag, default tag "latest". */
export function manifestReference(ref: RegistryRef): string {
  return ref.digest ?? ref.tag ?? 'latest';
}

export function formatRef(ref: ImageRef): string {
  if (ref.kind === 'layout') return `oci:${ref.dir}${ref.tag ? `:${ref.tag}` : ''}`;
  return `${ref.registry}/${ref.repository}${ref.tag ? `:${ref.tag}` : ''}${ref.digest ? `@${ref.digest}` : ''}`;
}

/** 127.0.0.0/8, localhost and ::1 — reached over plain http by default, as docker does. */
export function isLoopbackHost(registry: string): boolean {
  let host = registry;
  if (host.startsWith('[')) host = host.slice(1, host.indexOf(']'));
  else if (host.includes(':')) host = host.slice(0, host.lastIndexOf(':'));
  host = host.toLowerCase();
  return host === 'localhost' || host === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
}
