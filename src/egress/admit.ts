import type net from "node:net";
import { normalizeHost } from "./address.js";
import type { EgressAuditRecord } from "./audit-record.js";
import type { CredentialTable, EgressClient } from "./credentials.js";
import { EgressError } from "./errors.js";
import { authFailure, denied, type Failure, upstreamFailure } from "./failure.js";
import { HOST_LOOPBACK_NAME, type HostLoopbackGrants } from "./host-loopback.js";
import type { EgressPolicy } from "./policy.js";
import { dialUpstream, resolveUpstream } from "./upstream.js";
import type { UpstreamReader } from "./upstream-reader.js";

/** What admission needs from the proxy. */
export interface ProxyContext {
  policy(): EgressPolicy;
  hostLoopback: HostLoopbackGrants;
  credentials: CredentialTable;
  ownAddresses?: () => string[];
  dialTimeoutMs: number;
  responseTimeoutMs: number;
  /** Bound on a connection where no byte moves either way (a tunnel; a plain response's body). */
  idleTimeoutMs: number;
  record(r: EgressAuditRecord): void;
}

/** The audit record of one request, completed when it ends. */
export type RecordBase = Pick<
  EgressAuditRecord,
  "time" | "build" | "tags" | "client" | "method" | "host" | "port"
>;

export type Admission =
  | { ok: true; client: EgressClient; upstream: net.Socket; address: string; rule: string; base: RecordBase }
  | { ok: false; failure: Failure };

/**
 * Everything between a parsed request and a connected upstream socket:
 * credential, resolution, policy, dial. Refusals are audited here, at once.
 */
export async function admit(
  ctx: ProxyContext,
  method: string,
  authorization: string | undefined,
  rawHost: string,
  port: number,
  startedAt: number,
  reader?: UpstreamReader,
): Promise<Admission> {
  const time = new Date(startedAt).toISOString();
  const host = normalizeHost(rawHost);
  const auth = ctx.credentials.authenticate(authorization);
  if ("error" in auth) {
    ctx.record({
      time,
      client: "unauthenticated",
      method,
      host,
      port,
      bytesUp: 0,
      bytesDown: 0,
      durationMs: Date.now() - startedAt,
      decision: "deny",
      rule: "credential",
      error: auth.error,
    });
    return { ok: false, failure: authFailure(auth.error) };
  }
  return admitClient(ctx, auth, method, host, port, startedAt, reader);
}

/**
 * Admission of an authenticated client (a proxy request, or the daemon's own
 * traffic through dialEgress): resolution, policy, dial. Refusals are audited.
 */
export async function admitClient(
  ctx: ProxyContext,
  auth: EgressClient,
  method: string,
  host: string,
  port: number,
  startedAt: number,
  reader?: UpstreamReader,
): Promise<Admission> {
  const time = new Date(startedAt).toISOString();
  const base: RecordBase = {
    time,
    ...(auth.kind === "build" ? { build: auth.id } : {}),
    ...(auth.tags.length > 0 ? { tags: auth.tags } : {}),
    client: auth.id,
    method,
    host,
    port,
  };
  const finish = (decision: "deny" | "error", rule: string, error: string, address?: string) =>
    ctx.record({
      ...base,
      ...(address ? { address } : {}),
      bytesUp: 0,
      bytesDown: 0,
      durationMs: Date.now() - startedAt,
      decision,
      rule,
      error,
    });
  if (host === HOST_LOOPBACK_NAME) {
    // Only buildkitd, only a port a running build pushes to (see HostLoopbackGrants).
    if (auth.kind !== "buildkitd" || !ctx.hostLoopback.has(port)) {
      const reason = `${HOST_LOOPBACK_NAME}:${port} is the host's loopback, open only to a build's push or cache export to localhost:${port}`;
      finish("deny", "host loopback", reason);
      return {
        ok: false,
        failure: denied(
          method,
          host,
          port,
          { allow: false, rule: "host loopback", reason },
          ctx.policy().source,
        ),
      };
    }
    try {
      const upstream = await dialUpstream(host, "127.0.0.1", port, ctx.dialTimeoutMs, reader);
      return { ok: true, client: auth, upstream, address: "127.0.0.1", rule: "host loopback (push)", base };
    } catch (err) {
      const msg = (err as Error).message;
      finish("error", "host loopback (push)", msg, "127.0.0.1");
      return { ok: false, failure: upstreamFailure(502, msg) };
    }
  }
  const policy = ctx.policy();
  let addresses: string[];
  try {
    addresses = (await resolveUpstream(host, policy)).addresses;
  } catch (err) {
    // A name that is not allowed anyway is reported as denied, not as a lookup failure.
    const pre = policy.decide(host, port, [], { ownAddresses: ctx.ownAddresses?.() });
    if (!pre.allow) {
      finish("deny", pre.rule, pre.reason ?? "denied");
      return { ok: false, failure: denied(method, host, port, pre, policy.source) };
    }
    const msg = (err as Error).message;
    finish("error", pre.rule, msg);
    return { ok: false, failure: upstreamFailure(502, msg) };
  }
  const decision = policy.decide(host, port, addresses, { ownAddresses: ctx.ownAddresses?.() });
  if (!decision.allow || !decision.address) {
    finish("deny", decision.rule, decision.reason ?? "denied", addresses[0]);
    return { ok: false, failure: denied(method, host, port, decision, policy.source) };
  }
  try {
    const upstream = await dialUpstream(host, decision.address, port, ctx.dialTimeoutMs, reader);
    return { ok: true, client: auth, upstream, address: decision.address, rule: decision.rule, base };
  } catch (err) {
    const msg = (err as Error).message;
    finish("error", decision.rule, msg, decision.address);
    const timeout = err instanceof EgressError && err.code === "upstream_timeout";
    return { ok: false, failure: upstreamFailure(timeout ? 504 : 502, msg) };
  }
}

/** The audit record of an admitted connection, once it ends: bytes both ways, duration, outcome. */
export function recordAdmitted(
  ctx: ProxyContext,
  adm: Extract<Admission, { ok: true }>,
  startedAt: number,
  error: string | undefined,
): void {
  ctx.record({
    ...adm.base,
    address: adm.address,
    bytesUp: adm.upstream.bytesWritten,
    bytesDown: adm.upstream.bytesRead,
    durationMs: Date.now() - startedAt,
    decision: error ? "error" : "allow",
    rule: adm.rule,
    ...(error ? { error } : {}),
  });
}
