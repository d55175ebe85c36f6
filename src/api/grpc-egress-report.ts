import { createHash } from "node:crypto";
import { create, toBinary } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { StatusResponseSchema } from "../buildkit/index.js";

/** How many solves are remembered: far more than run at once; the oldest go first. */
const LIMIT = 1000;

export type EgressReport = (opts: { failed: boolean }) => { summary: string; details: string[] };

/**
 * Refs of /grpc solves that got a step network, with their connection's
 * egress report: shared by all connections, since a client may follow a
 * solve's progress on another one. The Control.Status stream of the solve
 * shows it at its end (see egressStatusMessage), as a classic build's
 * output ends with the summary line.
 */
export class EgressReports {
  readonly #reports = new Map<string, EgressReport>();

  set(ref: string, report: EgressReport): void {
    this.#reports.delete(ref);
    this.#reports.set(ref, report);
    if (this.#reports.size > LIMIT) this.#reports.delete(this.#reports.keys().next().value as string);
  }

  /** The report of a solve, once (a second Status stream for it shows nothing more). */
  take(ref: string): EgressReport | undefined {
    const r = this.#reports.get(ref);
    this.#reports.delete(ref);
    return r;
  }

  delete(ref: string): void {
    this.#reports.delete(ref);
  }
}

/**
 * One progress update with a completed vertex named by the summary line,
 * whose log holds the details (denials with the rule that denied them;
 * BuildKit's failed connections): what `docker buildx build` prints last.
 */
export function egressStatusMessage(ref: string, report: { summary: string; details: string[] }): Uint8Array {
  const now = timestampFromDate(new Date());
  const digest = `sha256:${createHash("sha256").update(`arca-egress-report:${ref}`).digest("hex")}`;
  const msg = create(StatusResponseSchema, {
    vertexes: [{ digest, name: report.summary, started: now, completed: now }],
    logs: report.details.map((line) => ({
      vertex: digest,
      timestamp: now,
      stream: 1n,
      msg: new TextEncoder().encode(`${line}\n`),
    })),
  });
  return toBinary(StatusResponseSchema, msg);
}
