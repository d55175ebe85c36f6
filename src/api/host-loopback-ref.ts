import { HOST_LOOPBACK_NAME } from "../egress/index.js";
import { formatReference, parseNormalizedTagged } from "../images/index.js";
import { ApiError } from "./errors.js";

/** What mapping a registry name on the user's host needs from the call it belongs to. */
export interface HostLoopbackDeps {
  /** Opens the host's loopback `port` to buildkitd; returns the release. */
  hostLoopback?: (port: number) => () => void;
  /** Aborts when the call ends: the host-loopback grants (and, for Control.Solve, the push grants) end with it. */
  signal: AbortSignal;
  /** Learns the domain the user named for a host-loopback port, so progress can show it back. */
  loopbackDomains?: Map<number, string>;
}

/**
 * The name BuildKit reaches a registry under. `localhost:PORT` (or
 * 127.0.0.1) means the user's host, as with dockerd, not the sandbox's own
 * loopback: it becomes HOST_LOOPBACK_NAME:PORT, which the egress proxy opens
 * to buildkitd for this call only.
 */
export function upstreamName(name: string, deps: HostLoopbackDeps): { name: string; loopback: boolean } {
  const ref = parseNormalizedTagged(name);
  const m = /^(?:localhost|127(?:\.\d+){3}|\[::1\])(?::(\d+))?$/i.exec(ref.domain);
  if (!m) return { name, loopback: false };
  if (!m[1] || !deps.hostLoopback) {
    throw new ApiError(
      "invalid_parameter",
      `cannot reach ${ref.domain} from a build: name the registry on this host with its port (localhost:PORT)`,
    );
  }
  const port = Number(m[1]);
  const release = deps.hostLoopback(port);
  deps.signal.addEventListener("abort", release, { once: true });
  deps.loopbackDomains?.set(port, ref.domain);
  const mapped = formatReference({ ...ref, domain: `${HOST_LOOPBACK_NAME}:${port}` });
  return { name: mapped, loopback: true };
}

/** A registry cache ref on the host's loopback goes through the egress path too; true when mapped. */
export function mapCacheRef(
  c: { Type: string; Attrs: Record<string, string> },
  deps: HostLoopbackDeps,
): boolean {
  if (c.Type !== "registry" || !c.Attrs.ref) return false;
  const t = upstreamName(c.Attrs.ref, deps);
  if (!t.loopback) return false;
  c.Attrs.ref = t.name;
  c.Attrs["registry.insecure"] = "true";
  return true;
}

/** The frontend's `cache-imports` attr with its loopback refs mapped, or undefined when nothing changed. */
export function mapCacheImportsAttr(json: string | undefined, deps: HostLoopbackDeps): string | undefined {
  if (!json) return undefined;
  let list: { Type: string; Attrs: Record<string, string> }[];
  try {
    list = JSON.parse(json);
  } catch {
    return undefined; // not ours to judge: BuildKit reports a malformed attr
  }
  if (!Array.isArray(list)) return undefined;
  let changed = false;
  for (const c of list) if (c?.Attrs && mapCacheRef(c, deps)) changed = true;
  return changed ? JSON.stringify(list) : undefined;
}
