/** One line of the audit log (`<data root>/egress.log`, JSONL). */
export interface EgressAuditRecord {
  /** When the request arrived (ISO 8601). */
  time: string;
  build?: string;
  tags?: string[];
  /** The authenticated client id ("unauthenticated" for refused credentials). */
  client: string;
  /** CONNECT, or the method of a plain-HTTP request. */
  method: string;
  host: string;
  port: number;
  /** The address dialed (or refused). */
  address?: string;
  /** Payload bytes client→upstream and upstream→client. */
  bytesUp: number;
  bytesDown: number;
  durationMs: number;
  decision: "allow" | "deny" | "error";
  rule: string;
  error?: string;
}

/** A JSONL line as a record, or undefined for a line that is not one (e.g. torn by a crash). */
export function parseAuditLine(line: string): EgressAuditRecord | undefined {
  if (line.trim() === "") return undefined;
  try {
    const r = JSON.parse(line) as EgressAuditRecord;
    return typeof r === "object" && r !== null && typeof r.host === "string" ? r : undefined;
  } catch {
    return undefined;
  }
}

function bytes(n: number): string {
  if (n < 1024) return `${n}B`;
  const units = ["KiB", "MiB", "GiB", "TiB"];
  let v = n / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v.toFixed(v < 10 ? 1 : 0)}${units[i]}`;
}

/**
 * The human line of `arca egress log`:
 * `2026-12-06T03:30:00.000Z  b1x2  allow  CONNECT registry.test:443  ↑1.2KiB ↓4.0MiB  120ms  mode audit`.
 */
export function formatAuditRecord(r: EgressAuditRecord): string {
  const who = r.build ?? r.client;
  const target = r.host.includes(":") ? `[${r.host}]:${r.port}` : `${r.host}:${r.port}`;
  const via = r.address && r.address !== r.host ? ` (${r.address})` : "";
  const err = r.error ? `  ${r.error}` : "";
  return `${r.time}  ${who}  ${r.decision}  ${r.method} ${target}${via}  up ${bytes(r.bytesUp)} down ${bytes(r.bytesDown)}  ${r.durationMs}ms  ${r.rule}${err}`;
}
