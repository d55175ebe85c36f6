import { randomUUID } from "node:crypto";
import type { EgressAuditRecord, EgressProxy } from "../egress/index.js";
import { EGRESS_PORT, STEP_GATEWAY } from "../sandbox/index.js";

/** What a build holds of the egress path while it runs. */
export interface BuildEgressGrant {
  /** Build id in the audit log (`arca egress log --build ID`). */
  id: string;
  /** HTTP(S)_PROXY for RUN steps: the egress listener on the step network, with this build's credential. */
  stepProxy: string;
  /** Releases the credential (later connections with it are refused) and returns the summary line. */
  finish(): string;
}

/**
 * Gives a build its own egress credential, so every connection its RUN
 * steps make is attributed to it, and reports denials as they happen
 * (`onDenied`, one line each, with the rule and how to allow the host).
 */
export function openBuildEgress(
  proxy: EgressProxy,
  tags: string[],
  onDenied: (line: string) => void,
): BuildEgressGrant {
  const id = `build-${randomUUID().slice(0, 12)}`;
  const cred = proxy.register({ id, kind: "build", tags });
  const unsubscribe = proxy.onRecord((r) => {
    if (r.build === id && r.decision === "deny") onDenied(deniedLine(r));
  });
  return {
    id,
    stepProxy: cred.proxyUrl(`${STEP_GATEWAY}:${EGRESS_PORT}`),
    finish() {
      unsubscribe();
      cred.release();
      const s = proxy.summary(id);
      const plural = (n: number, w: string) => `${n} ${w}${n === 1 ? "" : "s"}`;
      return `egress: ${plural(s.requests, "request")} to ${plural(s.hosts, "host")}, ${s.denied} denied (arca egress log --build ${id})`;
    },
  };
}

function deniedLine(r: EgressAuditRecord): string {
  return `egress denied: ${r.method} ${r.host}:${r.port} (rule: ${r.rule}${r.error ? `; ${r.error}` : ""})`;
}
