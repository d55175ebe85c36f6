import { ImageError } from "./errors.js";

/**
 * Docker image references, following github.com/distribution/reference's grammar and its
 * "normalized named" rules. Hand-written because no installed package parses them.
 *
 *   reference := name [ ":" tag ] [ "@" digest ]
 *   name      := [domain "/"] path-component ["/" path-component]*
 */
export interface Reference {
  /** e.g. `docker.io` */
  domain: string;
  /** e.g. `library/busybox` */
  path: string;
  tag?: string;
  digest?: string;
}

export const DEFAULT_DOMAIN = "docker.io";
const LEGACY_DEFAULT_DOMAIN = "index.docker.io";
const OFFICIAL_REPO_PREFIX = "library/";
const NAME_TOTAL_LENGTH_MAX = 255;

const DOMAIN_COMPONENT = "(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])";
const DOMAIN_NAME = `${DOMAIN_COMPONENT}(?:\\.${DOMAIN_COMPONENT})*`;
const IPV6 = "\\[(?:[a-fA-F0-9:]+)\\]";
const DOMAIN_RE = new RegExp(`^(?:${DOMAIN_NAME}|${IPV6})(?::[0-9]+)?$`);
const PATH_COMPONENT = "[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*";
const PATH_RE = new RegExp(`^${PATH_COMPONENT}(?:/${PATH_COMPONENT})*$`);
const TAG_RE = /^[\w][\w.-]{0,127}$/;
const DIGEST_RE = /^[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}$/;
const ANCHORED_ID_RE = /^[a-f0-9]{64}$/;

function invalid(ref: string, why: string): ImageError {
  return new ImageError("invalid_reference", `invalid reference format: ${JSON.stringify(ref)}: ${why}`);
}

/** True when the first path component names a registry host rather than a Docker Hub namespace. */
export function looksLikeDomain(component: string): boolean {
  return component.includes(".") || component.includes(":") || component === "localhost";
}

/** Parses and normalizes (`busybox` -> docker.io/library/busybox); throws invalid_reference. */
export function parseReference(input: string): Reference {
  if (input.length === 0) throw invalid(input, "empty");
  if (ANCHORED_ID_RE.test(input)) {
    throw invalid(input, "repository name must not be a 64-byte hexadecimal string");
  }
  let rest = input;
  let digest: string | undefined;
  const at = rest.indexOf("@");
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    if (!DIGEST_RE.test(digest)) throw invalid(input, "invalid digest");
    if (!digest.startsWith("sha256:") || !/^sha256:[a-f0-9]{64}$/.test(digest)) {
      throw invalid(input, "unsupported digest algorithm or length");
    }
  }
  let tag: string | undefined;
  // A ':' after the last '/' separates the tag; earlier ones belong to a domain's port.
  const colon = rest.lastIndexOf(":");
  if (colon > rest.lastIndexOf("/")) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!TAG_RE.test(tag)) throw invalid(input, "invalid tag");
  }
  let domain = DEFAULT_DOMAIN;
  let path = rest;
  const slash = rest.indexOf("/");
  if (slash >= 0) {
    const first = rest.slice(0, slash);
    if (looksLikeDomain(first) || first.toLowerCase() !== first) {
      domain = first;
      path = rest.slice(slash + 1);
    }
  }
  if (!DOMAIN_RE.test(domain)) throw invalid(input, "invalid domain");
  if (domain === LEGACY_DEFAULT_DOMAIN) domain = DEFAULT_DOMAIN;
  if (path.toLowerCase() !== path) throw invalid(input, "repository name must be lowercase");
  if (!PATH_RE.test(path)) throw invalid(input, "invalid repository name");
  if (domain === DEFAULT_DOMAIN && !path.includes("/")) path = OFFICIAL_REPO_PREFIX + path;
  if (`${domain}/${path}`.length > NAME_TOTAL_LENGTH_MAX) throw invalid(input, "repository name too long");
  return { domain, path, tag, digest };
}

/** Like parseReference, then adds `:latest` when neither tag nor digest is given (Docker's TagNameOnly). */
export function parseNormalizedTagged(input: string): Reference {
  const ref = parseReference(input);
  if (ref.tag === undefined && ref.digest === undefined) ref.tag = "latest";
  return ref;
}

export function repositoryName(ref: Reference): string {
  return `${ref.domain}/${ref.path}`;
}

/** Full string form: `docker.io/library/busybox:latest`. */
export function formatReference(ref: Reference): string {
  let s = repositoryName(ref);
  if (ref.tag !== undefined) s += `:${ref.tag}`;
  if (ref.digest !== undefined) s += `@${ref.digest}`;
  return s;
}

/** Docker's "familiar" repository: `docker.io/library/busybox` -> `busybox`, `docker.io/a/b` -> `a/b`. */
export function familiarRepository(ref: Reference): string {
  if (ref.domain !== DEFAULT_DOMAIN) return repositoryName(ref);
  return ref.path.startsWith(OFFICIAL_REPO_PREFIX) && ref.path.split("/").length === 2
    ? ref.path.slice(OFFICIAL_REPO_PREFIX.length)
    : ref.path;
}

/** Familiar string form as printed by `docker images`: `busybox:latest`, `ghcr.io/x/y:1`. */
export function familiarString(ref: Reference): string {
  let s = familiarRepository(ref);
  if (ref.tag !== undefined) s += `:${ref.tag}`;
  if (ref.digest !== undefined) s += `@${ref.digest}`;
  return s;
}

/** Familiar form of a stored full name such as `docker.io/library/busybox:local`. */
export function familiarName(fullName: string): string {
  return familiarString(parseReference(fullName));
}

export function isValidRepositoryPath(path: string): boolean {
  return PATH_RE.test(path);
}

export function isValidTag(tag: string): boolean {
  return TAG_RE.test(tag);
}
