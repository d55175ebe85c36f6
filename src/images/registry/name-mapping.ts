import { ImageError } from "../errors.js";
import {
  DEFAULT_DOMAIN,
  familiarName,
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
  const withPort = !ns && path.includes("/") ? PORT_COMPONENT_RE.exec(first) : null;
  const hasDomain = !ns && path.includes("/") && looksLikeDomain(first);
  const candidate = ns
    ? `${ns}/${path}`
    : withPort
      ? `${withPort[1]}:${withPort[2]}${path.slice(first.length)}`
      : hasDomain
        ? path
        : `${DEFAULT_DOMAIN}/${path}`;
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

/** Where untagged builds are pushed (by digest): the image is stored, no name is recorded. */
export const DANGLING_PATH = "arca/dangling";

/**
 * A domain with a port as one path component: a component cannot hold ':', and `__` cannot occur in a
 * domain (no '_' there), so `localhost__5000` stands for `localhost:5000` unambiguously.
 */
const PORT_COMPONENT_RE = /^([a-z0-9][a-z0-9.-]*)__(\d{1,5})$/;

/**
 * The name BuildKit's image exporter should push to so that the registry endpoint records `storeName`:
 * `demo:1` -> `<host>/library/demo:1`, `ghcr.io/x/y:2` -> `<host>/ghcr.io/x/y:2`,
 * `localhost:5000/app:1` -> `<host>/localhost__5000/app:1`. Domains a path component cannot carry
 * (upper case, IPv6 literals) are refused.
 */
export function pushNameFor(registryHost: string, storeName: string): string {
  const ref = parseNormalizedTagged(storeName);
  let domain = ref.domain;
  if (domain.includes(":")) {
    const [host = "", port = ""] = domain.split(/:(?=\d+$)/);
    const encoded = `${host}__${port}`;
    if (!PORT_COMPONENT_RE.test(encoded)) {
      throw new ImageError(
        "invalid_reference",
        `cannot push ${storeName} through the registry endpoint: its registry ${JSON.stringify(domain)} cannot be named in a repository path`,
      );
    }
    domain = encoded;
  }
  const path = ref.domain === DEFAULT_DOMAIN ? ref.path : `${domain}/${ref.path}`;
  let name = `${registryHost}/${path}`;
  if (ref.tag !== undefined) name += `:${ref.tag}`;
  if (ref.digest !== undefined) name += `@${ref.digest}`;
  return name;
}

/**
 * Replaces every name BuildKit pushed to through the registry endpoint
 * (`127.0.0.1:5000/library/app:1`) in a progress text with the image's own
 * name (`app:1`), so build output names what the user asked for, not Arca's
 * internal route. Untagged builds (pushed by digest) read "image".
 */
export function displayPushNames(registryHost: string, text: string): string {
  if (!text.includes(registryHost)) return text;
  const host = registryHost.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  const re = new RegExp(
    `${host}/([a-z0-9._/-]+)(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(@sha256:[a-f0-9]{64})?`,
    "g",
  );
  return text.replace(re, (whole, path: string, tag = "", digest = "") => {
    if (path === DANGLING_PATH || path.startsWith(`${DANGLING_PATH}/`))
      return digest ? `image${digest}` : "image";
    try {
      return familiarName(`${storeRepository(path)}${tag}`) + digest;
    } catch {
      return whole;
    }
  });
}

/**
 * A progress text of a build whose image goes into Arca's store, as dockerd shows a local load:
 * the exporter's push of `app:1` through the registry endpoint ("pushing manifest for
 * 127.0.0.1:5000/library/app:1@sha256:…") reads "naming to docker.io/library/app:1", an untagged one
 * "naming to moby-dangling@sha256:…", and, when the build pushes nowhere else (`storeOnly`),
 * "pushing layers" reads "storing layers": nothing leaves the machine, so nothing should read like a
 * push. Other names through the endpoint as displayPushNames.
 */
export function storeExportText(registryHost: string, text: string, storeOnly = false): string {
  if (text === "pushing layers") return storeOnly ? "storing layers" : text;
  const prefix = `pushing manifest for ${registryHost}/`;
  if (text.startsWith(prefix)) {
    const m = /^([a-z0-9._/-]+)(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(@sha256:[a-f0-9]{64})?$/.exec(
      text.slice(prefix.length),
    );
    if (m) {
      const [, path = "", tag = "", digest = ""] = m;
      if (path === DANGLING_PATH || path.startsWith(`${DANGLING_PATH}/`))
        return `naming to moby-dangling${digest}`;
      try {
        return `naming to ${storeRepository(path)}${tag}`;
      } catch {
        // Not a name the endpoint maps: shown as displayPushNames shows it.
      }
    }
  }
  return displayPushNames(registryHost, text);
}
