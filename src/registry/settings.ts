import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { RegistryError } from "./errors.js";

/** Registry settings shared with BuildKit (dockerd's --insecure-registry, certs.d, --registry-mirror). */
export interface RegistrySettings {
  /** `host[:port]` reached over plain HTTP. */
  insecure?: string[];
  /** dockerd's layout: `<dir>/<host[:port]>/ca.crt`. */
  certsDir?: string;
  /** Mirrors of docker.io, tried in order before it (`https://mirror.example`, `http://host:port`). */
  mirrors?: string[];
}

/** One place a repository can be reached. */
export interface Endpoint {
  /** `https://host[:port]` or `http://host[:port]`. */
  base: URL;
  /** Extra CA certificates (certs.d) for TLS. */
  ca?: Buffer;
  /** TLS without verification (a loopback registry, as dockerd's default insecure 127.0.0.0/8). */
  skipVerify?: boolean;
  mirror: boolean;
}

/** docker.io's API host. */
export const DOCKER_HUB_API = "registry-1.docker.io";

function isLoopbackHost(host: string): boolean {
  const name = host.replace(/:\d+$/, "").replace(/^\[|\]$/g, "");
  return name === "localhost" || name === "::1" || /^127\.\d+\.\d+\.\d+$/.test(name);
}

/** Checks and normalizes a --registry-mirror value (a URL with http or https, no path beyond /). */
export function parseMirror(value: string): URL {
  let url: URL;
  try {
    url = new URL(value.includes("://") ? value : `https://${value}`);
  } catch {
    throw new RegistryError("invalid_request", `invalid registry mirror ${JSON.stringify(value)}: not a URL`);
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new RegistryError(
      "invalid_request",
      `invalid registry mirror ${value}: must be http:// or https://`,
    );
  }
  if (url.pathname !== "/" && url.pathname !== "") {
    throw new RegistryError("invalid_request", `invalid registry mirror ${value}: a path is not allowed`);
  }
  return new URL(`${url.protocol}//${url.host}`);
}

/**
 * Where a registry domain is reached, in the order to try: docker.io's
 * mirrors first, then the registry itself over HTTPS (with its certs.d CA),
 * plain HTTP for an insecure registry, and HTTPS-then-HTTP without
 * verification for a loopback one (dockerd's default insecure range).
 */
export function endpointsFor(domain: string, settings: RegistrySettings): Endpoint[] {
  const out: Endpoint[] = [];
  const caFor = (host: string): Buffer | undefined => {
    if (!settings.certsDir) return undefined;
    const file = path.join(settings.certsDir, host, "ca.crt");
    return existsSync(file) ? readFileSync(file) : undefined;
  };
  if (domain === "docker.io") {
    for (const m of settings.mirrors ?? []) {
      const base = parseMirror(m);
      out.push({ base, mirror: true, ...withCa(caFor(base.host)) });
    }
    out.push({ base: new URL(`https://${DOCKER_HUB_API}`), mirror: false, ...withCa(caFor(DOCKER_HUB_API)) });
    return out;
  }
  if ((settings.insecure ?? []).includes(domain))
    return [{ base: new URL(`http://${domain}`), mirror: false }];
  const ca = caFor(domain);
  if (isLoopbackHost(domain) && !ca) {
    return [
      { base: new URL(`https://${domain}`), mirror: false, skipVerify: true },
      { base: new URL(`http://${domain}`), mirror: false },
    ];
  }
  return [{ base: new URL(`https://${domain}`), mirror: false, ...withCa(ca) }];
}

function withCa(ca: Buffer | undefined): { ca?: Buffer } {
  return ca ? { ca } : {};
}
