import type { EgressAuditRecord } from "./audit-record.js";

export interface EgressSummary {
  requests: number;
  hosts: number;
  denied: number;
  bytesUp: number;
  bytesDown: number;
  denials: EgressAuditRecord[];
}

const MAX_CLIENTS = 1024;
const MAX_DENIALS = 100;

/** Per-client totals for the one-line summary at the end of a build. */
export class SummaryTable {
  private readonly byClient = new Map<string, { s: EgressSummary; hosts: Set<string> }>();

  add(r: EgressAuditRecord): void {
    let entry = this.byClient.get(r.client);
    if (!entry) {
      entry = {
        s: { requests: 0, hosts: 0, denied: 0, bytesUp: 0, bytesDown: 0, denials: [] },
        hosts: new Set(),
      };
      this.byClient.set(r.client, entry);
      // Bounded: the oldest clients' totals go first (a build reads its own at its end).
      if (this.byClient.size > MAX_CLIENTS) {
        const oldest = this.byClient.keys().next().value as string;
        this.byClient.delete(oldest);
      }
    }
    const { s, hosts } = entry;
    s.requests++;
    hosts.add(r.host);
    s.hosts = hosts.size;
    s.bytesUp += r.bytesUp;
    s.bytesDown += r.bytesDown;
    if (r.decision === "deny") {
      s.denied++;
      if (s.denials.length < MAX_DENIALS) s.denials.push(r);
    }
  }

  get(clientId: string): EgressSummary {
    const e = this.byClient.get(clientId);
    if (!e) return { requests: 0, hosts: 0, denied: 0, bytesUp: 0, bytesDown: 0, denials: [] };
    return { ...e.s, denials: [...e.s.denials] };
  }
}
