/**
 * Lossless version ↔ OCI tag mapping. Tags allow only `[A-Za-z0-9_.-]` (first char not `.`/`-`,
 * at most 128 chars). luet replaces `+` by `-`, so `1.0+1` and `1.0-1` collide; cpm escapes
 * instead, with `_` as the escape character (see docs/repository.md):
 *   `_`→`__`  `+`→`_p`  `~`→`_t`  `:`→`_c`  `/`→`_s`  any other byte → `_xHH` (UTF-8, lower hex).
 */
import { CpmError } from '../errors.js';

const PLAIN = /[A-Za-z0-9.-]/;
const NAMED: Record<string, string> = { _: '__', '+': '_p', '~': '_t', ':': '_c', '/': '_s' };
const UNNAMED: Record<string, string> = { _: '_', p: '+', t: '~', c: ':', s: '/' };

export const MAX_TAG_LENGTH = 128;

/** Encodes any string (a version) into a valid OCI tag; decodeTag(encodeTag(v)) === v. */
export function encodeTag(value: string): string {
  if (value === '') throw new CpmError('E_USAGE', 'cannot encode an empty version as a tag');
  let out = '';
  for (const ch of value) {
    if (PLAIN.test(ch)) out += ch;
    else if (NAMED[ch]) out += NAMED[ch];
    else for (const b of Buffer.from(ch, 'utf8')) out += `_x${b.toString(16).padStart(2, '0')}`;
  }
  // A tag must not start with '.' or '-'; escape a leading one so the first char is '_'.
  if (out[0] === '.' || out[0] === '-')
    out = `_x${out.charCodeAt(0).toString(16).padStart(2, '0')}${out.slice(1)}`;
  if (out.length > MAX_TAG_LENGTH) {
    throw new CpmError(
      'E_USAGE',
      `version "${value}" is too long for an OCI tag once encoded (${out.length} > ${MAX_TAG_LENGTH})`,
    );
  }
  return out;
}

/** The inverse of encodeTag; a tag that encodeTag cannot have produced is an error. */
export function decodeTag(tag: string): string {
  const bytes: number[] = [];
  const bad = (why: string): CpmError =>
    new CpmError('E_REPO', `tag "${tag}" is not a cpm version tag: ${why}`);
  for (let i = 0; i < tag.length; i++) {
    const ch = tag[i]!;
    if (ch !== '_') {
      if (!PLAIN.test(ch)) throw bad(`unexpected "${ch}"`);
      bytes.push(ch.charCodeAt(0));
      continue;
    }
    const next = tag[i + 1];
    if (next === undefined) throw bad('dangling "_"');
    if (next === 'x') {
      const hex = tag.slice(i + 2, i + 4);
      if (!/^[0-9a-f]{2}$/.test(hex)) throw bad(`bad escape "_x${hex}"`);
      bytes.push(parseInt(hex, 16));
      i += 3;
      continue;
    }
    const dec = UNNAMED[next];
    if (dec === undefined) throw bad(`unknown escape "_${next}"`);
    bytes.push(dec.charCodeAt(0));
    i += 1;
  }
  const s = Buffer.from(bytes).toString('utf8');
  if (encodeTag(s) !== tag) throw bad('not in canonical form');
  return s;
}

/** True for strings the distribution spec accepts as tags. */
export function isValidTag(tag: string): boolean {
  return /^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$/.test(tag);
}

/** The registry repository (below the namespace) of a package family: "category/name". */
export function packageRepository(p: { category: string; name: string }): string {
  const repo = p.category ? `${p.category}/${p.name}` : p.name;
  if (
    !/^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:\/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$/.test(
      repo,
    )
  ) {
    throw new CpmError('E_REPO', `package "${repo}" cannot be a registry repository name`, {
      hint: 'registry repository names allow lower-case letters, digits and single . _ - separators',
      context: { package: repo },
    });
  }
  return repo;
}

/**
 * The ref name of a package in an OCI layout (index.json): one tag-shaped string, because layout
 * refs (`oci:DIR:REF`) cannot contain "/". encodeTag("category/name:version") — still lossless.
 */
export function layoutTag(repository: string, versionTag: string): string {
  const t = `${encodeTag(repository)}_c${versionTag}`;
  if (t.length > MAX_TAG_LENGTH)
    throw new CpmError(
      'E_USAGE',
      `layout ref for ${repository}:${versionTag} exceeds ${MAX_TAG_LENGTH} chars`,
    );
  return t;
}

/** Inverse of layoutTag: { repository, version }. */
export function parseLayoutTag(tag: string): { repository: string; version: string } {
  const s = decodeTag(tag);
  const colon = s.indexOf(':');
  if (colon <= 0) throw new CpmError('E_REPO', `"${tag}" is not a cpm package ref name`);
  return { repository: s.slice(0, colon), version: s.slice(colon + 1) };
}

/** Well-known tag of the repository index artifact (registry: `<ns>:cpm-index`). */
export const INDEX_TAG = 'cpm-index';
