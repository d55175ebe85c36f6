import { TextDecoder } from "node:util";
import type { StatusResponse } from "../gen/moby/buildkit/v1/control_pb.js";
import { type ProgressEvent, toProgressEvents, type VertexPhase, type WarningEvent } from "./events.js";

/** How many complete log lines per vertex are kept to explain a failure. */
const LOG_TAIL_LINES = 10;

export interface FailedStep {
  digest: string;
  name: string;
  error: string;
  /** Last lines the step printed (stdout and stderr), oldest first. */
  logTail: string[];
}

export interface ProgressSummary {
  /** Distinct vertexes seen (BuildKit's "steps"). */
  total: number;
  completed: number;
  cached: number;
  errors: number;
  canceled: number;
  warnings: number;
  /** The first step that failed for a reason other than cancellation. */
  failed?: FailedStep;
}

interface VertexState {
  name: string;
  phase: VertexPhase;
  error: string;
  tail: string[];
  partial: string;
  decoder: TextDecoder;
}

/**
 * Accumulates a build's status stream so the build layer can say how it went
 * and, when it failed, which step failed, with what message and output.
 */
export class ProgressTracker {
  readonly #vertexes = new Map<string, VertexState>();
  readonly #warnings: WarningEvent[] = [];

  /** Folds one message in and returns its events (for forwarding). */
  update(resp: StatusResponse): ProgressEvent[] {
    const events = toProgressEvents(resp);
    for (const ev of events) {
      switch (ev.type) {
        case "vertex": {
          const v = this.#vertex(ev.digest);
          if (ev.name) v.name = ev.name;
          // A later "pending" echo of a vertex must not erase its progress.
          if (ev.phase !== "pending" || v.phase === "pending") v.phase = ev.phase;
          if (ev.error) v.error = ev.error;
          break;
        }
        case "log": {
          const v = this.#vertexes.get(ev.vertex);
          if (v) appendLog(v, v.decoder.decode(ev.data, { stream: true }));
          break;
        }
        case "warning":
          this.#warnings.push(ev);
          break;
        case "status":
          break;
      }
    }
    return events;
  }

  get warnings(): readonly WarningEvent[] {
    return this.#warnings;
  }

  summary(): ProgressSummary {
    const s: ProgressSummary = {
      total: this.#vertexes.size,
      completed: 0,
      cached: 0,
      errors: 0,
      canceled: 0,
      warnings: this.#warnings.length,
    };
    for (const [digest, v] of this.#vertexes) {
      if (v.phase === "done" || v.phase === "cached") s.completed++;
      if (v.phase === "cached") s.cached++;
      if (v.phase === "canceled") s.canceled++;
      if (v.phase === "error") {
        s.errors++;
        if (!s.failed) s.failed = { digest, name: v.name, error: v.error, logTail: logTail(v) };
      }
    }
    return s;
  }

  /** The first failed (not canceled) step, with its error message. */
  failedStep(): FailedStep | undefined {
    return this.summary().failed;
  }

  #vertex(digest: string): VertexState {
    let v = this.#vertexes.get(digest);
    if (!v) {
      v = { name: "", phase: "pending", error: "", tail: [], partial: "", decoder: new TextDecoder() };
      this.#vertexes.set(digest, v);
    }
    return v;
  }
}

function appendLog(v: VertexState, chunk: string): void {
  const parts = (v.partial + chunk).split("\n");
  v.partial = parts.pop() as string;
  v.tail.push(...parts);
  if (v.tail.length > LOG_TAIL_LINES) v.tail.splice(0, v.tail.length - LOG_TAIL_LINES);
}

function logTail(v: VertexState): string[] {
  const lines = v.partial ? [...v.tail, v.partial] : [...v.tail];
  return lines.slice(-LOG_TAIL_LINES);
}
