import { Authorizer } from "./auth.js";
import type { RegistryCredentials } from "./credentials.js";
import { RegistryError } from "./errors.js";
import { RepositoryClient } from "./repository.js";
import { type Endpoint, endpointsFor, type RegistrySettings } from "./settings.js";
import type { RegistryTransport } from "./transport.js";

/**
 * Runs `first` (the ping and the first request) against each endpoint of a
 * registry in turn until one answers: a mirror that fails falls through to
 * the registry itself (as dockerd), and a loopback registry tried over
 * HTTPS falls back to plain HTTP when no TLS answers. The rest of the work
 * stays on the endpoint that answered.
 */
export async function openRepository<T>(
  transport: RegistryTransport,
  settings: RegistrySettings,
  domain: string,
  path: string,
  actions: string,
  creds: RegistryCredentials,
  first: (repo: RepositoryClient) => Promise<T>,
  signal?: AbortSignal,
): Promise<{ repo: RepositoryClient; result: T }> {
  const endpoints = endpointsFor(domain, settings);
  let lastError: unknown;
  for (const [i, ep] of endpoints.entries()) {
    const repo = new RepositoryClient(
      transport,
      new Authorizer(transport, ep, creds, signal),
      path,
      actions,
      signal,
    );
    try {
      return { repo, result: await first(repo) };
    } catch (err) {
      lastError = err;
      const more = i < endpoints.length - 1;
      if (!more || signal?.aborted || !(ep.mirror || isTransportFailure(err, ep))) throw err;
    }
  }
  throw lastError;
}

function isTransportFailure(err: unknown, ep: Endpoint): boolean {
  return err instanceof RegistryError && err.code === "unreachable" && ep.base.protocol === "https:";
}
