import { randomUUID } from "node:crypto";
import type { EgressAuditRecord, EgressProxy } from "../egress/index.js";
import { EGRESS_PORT, STEP_GATEWAY } from "../sandbox/index.js";

/** What a build holds of the egress path while it runs. */
export interface BuildEgressGrant {
  /** Build id in the audit log (`arca egress log --build ID`). */
  id: string;
  /** HTTP(S)_PROXY for RUN steps: the egress listener on the step network, with this build's credential. */
  stepProxy: string;
  /**
   * Releases the credential (later connections with it are refused) and
   * returns the summary line; for a failed build, followed by what went
   * wrong with BuildKit's own connections while it ran (see below).
   */
  finish(opts?: { failed?: boolean }): string;
  /**
   * The build's egress so far, for a client that shows it at the end (buildx
   * progress): the summary line, and its denials and, for a failed build,
   * BuildKit's failed connections. The credential stays valid.
   */
  report(opts?: { failed?: boolean }): { summary: string; details: string[] };
}

/** Most denial lines a report repeats (the audit log has them all). */
const MAX_DENIAL_LINES = 20;

/** Most lines about BuildKit's own connections a failed build reports. */
const MAX_BUILDKITD_LINES = 5;

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
  // buildkitd's pulls and pushes share one credential, so they cannot be tied to this build for
  // sure; but BuildKit's registry client reports an upstream it could not talk to (denied, refused,
  // silent, closed by the idle bound) as "not found" whenever Arca's store mirror was asked first
  // (containerd keeps the mirror's 404 over later transport errors), so a failed build names them.
  const buildkitd: string[] = [];
  const denials: string[] = [];
  const unsubscribe = proxy.onRecord((r) => {
    if (r.build === id && r.decision === "deny") {
      const line = deniedLine(r);
      if (denials.length < MAX_DENIAL_LINES) denials.push(line);
      onDenied(line);
    } else if (r.client === "buildkitd" && r.decision !== "allow" && buildkitd.length < MAX_BUILDKITD_LINES) {
      const line = buildkitdLine(r);
      if (!buildkitd.includes(line)) buildkitd.push(line);
    }
  });
  return {
    id,
    stepProxy: cred.proxyUrl(`${STEP_GATEWAY}:${EGRESS_PORT}`),
    finish(opts = {}) {
      unsubscribe();
      cred.release();
      return [summaryLine(proxy, id), ...(opts.failed ? buildkitd : [])].join("\n");
    },
    report(opts = {}) {
      return { summary: summaryLine(proxy, id), details: [...denials, ...(opts.failed ? buildkitd : [])] };
    },
  };
}

function summaryLine(proxy: EgressProxy, id: string): string {
  const s = proxy.summary(id);
  const plural = (n: number, w: string) => `${n} ${w}${n === 1 ? "" : "s"}`;
  return `egress: ${plural(s.requests, "request")} to ${plural(s.hosts, "host")}, ${s.denied} denied (arca egress log --build ${id})`;
}

function deniedLine(r: EgressAuditRecord): string {
  return `egress denied: ${r.method} ${r.host}:${r.port} (rule: ${r.rule}${r.error ? `; ${r.error}` : ""})`;
}

function buildkitdLine(r: EgressAuditRecord): string {
  const what = r.decision === "deny" ? `denied (rule: ${r.rule})` : "failed";
  return `egress: BuildKit's connection to ${r.host}:${r.port} ${what}: ${r.error ?? r.rule}`;
}
