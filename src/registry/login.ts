import { Authorizer } from "./auth.js";
import type { RegistryCredentials } from "./credentials.js";
import { RegistryError } from "./errors.js";
import { DOCKER_HUB_API, endpointsFor, type RegistrySettings } from "./settings.js";
import type { RegistryTransport } from "./transport.js";

/** The registry domain a login's serveraddress names (`https://index.docker.io/v1/` is docker.io). */
export function loginDomain(serveraddress: string | undefined): string {
  const raw = (serveraddress ?? "").trim();
  if (!raw) return "docker.io";
  const host = raw.replace(/^https?:\/\//, "").replace(/\/.*$/, "");
  if (["index.docker.io", "docker.io", DOCKER_HUB_API, "registry.hub.docker.com"].includes(host))
    return "docker.io";
  return host;
}

/**
 * docker login: the credentials are checked against the registry itself
 * (basic auth on /v2/, or the token handshake); an identity token is
 * returned when the token server issued a refresh token.
 */
export async function login(
  transport: RegistryTransport,
  settings: RegistrySettings,
  creds: RegistryCredentials,
  signal?: AbortSignal,
): Promise<{ identityToken?: string }> {
  const domain = loginDomain(creds.serveraddress);
  const endpoints = endpointsFor(domain, settings).filter((e) => !e.mirror);
  let lastError: unknown;
  for (const [i, ep] of endpoints.entries()) {
    const auth = new Authorizer(transport, ep, creds, signal);
    try {
      await auth.login();
      return auth.refreshToken ? { identityToken: auth.refreshToken } : {};
    } catch (err) {
      lastError = err;
      const fallback = err instanceof RegistryError && err.code === "unreachable" && i < endpoints.length - 1;
      if (!fallback) throw err;
    }
  }
  throw lastError;
}
