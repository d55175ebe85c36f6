import { ImageError } from "../errors.js";
import {
  DEFAULT_DOMAIN,
  looksLikeDomain,
  parseNormalizedTagged,
  parseReference,
  repositoryName,
} from "../reference.js";

/**
 * Maps a registry request's repository path to a store repository (full name without tag).
 * Mirror requests carry the upstream registry in `ns` (`/v2/library/busybox/...?ns=docker.io`); pushes
 * arrive without it and name their registry in the path's first component when it looks like a host
 * (`ghcr.io/x/y`), else they are Docker Hub names (`library/demo` -> docker.io/library/demo).
 */
export function storeRepository(path: string, ns?: string | null): string {
  const first = path.split("/")[0] ?? "";
  const hasDomain = !ns && path.includes("/") && looksLikeDomain(first);
  const candidate = ns ? `${ns}/${path}` : hasDomain ? path : `${DEFAULT_DOMAIN}/${path}`;
  let ref: ReturnType<typeof parseReference>;
  try {
    ref = parseReference(candidate);
  } catch (err) {
    throw new ImageError("invalid_reference", `invalid repository name ${JSON.stringify(path)}`, {
      cause: err,
    });
  }
  if (ref.tag !== undefined || ref.digest !== undefined) {
    throw new ImageError("invalid_reference", `invalid repository name ${JSON.stringify(path)}`);
  }
  return repositoryName(ref);
}

/**
 * The name BuildKit's image exporter should push to so that the registry endpoint records `storeName`:
 * `demo:1` -> `<host>/library/demo:1`, `ghcr.io/x/y:2` -> `<host>/ghcr.io/x/y:2`.
 * Store names whose domain carries a port cannot be expressed (a path component cannot hold ':').
 */
export function pushNameFor(registryHost: string, storeName: string): string {
  const ref = parseNormalizedTagged(storeName);
  if (ref.domain.includes(":")) {
    throw new ImageError(
      "invalid_reference",
      `cannot push ${storeName} through the registry endpoint: domain has a port`,
    );
  }
  const path = ref.domain === DEFAULT_DOMAIN ? ref.path : `${ref.domain}/${ref.path}`;
  let name = `${registryHost}/${path}`;
  if (ref.tag !== undefined) name += `:${ref.tag}`;
  if (ref.digest !== undefined) name += `@${ref.digest}`;
  return name;
}
