import type { Lease, Placement } from "../backends/index.js";
import type { BuildLease, BuildRoute } from "../build/index.js";
import { familiarName } from "../images/index.js";
import type { ApiDeps } from "./deps.js";

/**
 * A build's place in the pool: a build reading its context from a client session runs where
 * that session is (the session already holds the place); others go by key.
 */
export async function leaseForBuild(
  deps: ApiDeps,
  route: BuildRoute,
  signal: AbortSignal,
): Promise<BuildLease> {
  const attrs: Record<string, string> = route.tags.length
    ? { names: route.tags.map(familiarName).join(",") }
    : {};
  if ("session" in route) {
    const at = await deps.pool.sessionPlacement(route.session, signal);
    if (at) return buildLease(deps, at, () => {});
    const lease = await deps.pool.acquire(`session:${route.session}`, signal, attrs);
    return buildLease(deps, lease, lease.release);
  }
  const lease = await deps.pool.acquire(route.key, signal, attrs);
  return buildLease(deps, lease, lease.release);
}

function buildLease(deps: ApiDeps, at: Placement, release: Lease["release"]): BuildLease {
  return {
    client: at.client,
    registryHost: at.registryHost,
    stepEgress: at.stepEgress,
    pushScope: at.pushScope,
    // With one backend there is nothing to name.
    ...(deps.pool.targets.length > 1 ? { backend: at.backend } : {}),
    release,
  };
}
