import type { StatusResponse, Vertex } from "../gen/moby/buildkit/v1/control_pb.js";
import { tsMillis } from "./timestamps.js";

/**
 * Where a vertex is in its life. "canceled" is an error ending in "context
 * canceled" (buildx prints CANCELED instead of ERROR for it); "pending" is a
 * vertex BuildKit announced but has not started.
 */
export type VertexPhase = "pending" | "start" | "cached" | "done" | "error" | "canceled";

export interface VertexEvent {
  type: "vertex";
  phase: VertexPhase;
  digest: string;
  name: string;
  inputs: string[];
  cached: boolean;
  startedMs?: number;
  completedMs?: number;
  error?: string;
  progressGroup?: { id: string; name: string; weak: boolean };
}

export interface StatusEvent {
  type: "status";
  vertex: string;
  id: string;
  name: string;
  current: number;
  total: number;
  done: boolean;
  timestampMs?: number;
  startedMs?: number;
  completedMs?: number;
}

export interface LogEvent {
  type: "log";
  vertex: string;
  /** 1 = stdout, 2 = stderr (BuildKit util/progress/logs). */
  stream: number;
  data: Uint8Array;
  timestampMs?: number;
}

export interface WarningEvent {
  type: "warning";
  vertex: string;
  level: number;
  short: string;
  detail: string[];
  url?: string;
  /** Source file the warning points into (e.g. "Dockerfile"), when given. */
  file?: string;
  /** 1-based line ranges in that file. */
  ranges?: Array<{ start: { line: number; character: number }; end: { line: number; character: number } }>;
}

export type ProgressEvent = VertexEvent | StatusEvent | LogEvent | WarningEvent;

const CANCELED_SUFFIX = "context canceled";

export function vertexPhase(v: Vertex): VertexPhase {
  if (v.error) return v.error.endsWith(CANCELED_SUFFIX) ? "canceled" : "error";
  if (v.cached) return "cached";
  if (v.completed) return "done";
  if (v.started) return "start";
  return "pending";
}

const text = new TextDecoder();

/**
 * Flattens one StatusResponse into events, in message order: vertexes,
 * statuses, logs, warnings. Stateless; see ProgressTracker for accumulation.
 */
export function toProgressEvents(resp: StatusResponse): ProgressEvent[] {
  const out: ProgressEvent[] = [];
  for (const v of resp.vertexes) {
    const ev: VertexEvent = {
      type: "vertex",
      phase: vertexPhase(v),
      digest: v.digest,
      name: v.name,
      inputs: [...v.inputs],
      cached: v.cached,
    };
    setIf(ev, "startedMs", tsMillis(v.started));
    setIf(ev, "completedMs", tsMillis(v.completed));
    if (v.error) ev.error = v.error;
    if (v.progressGroup) {
      ev.progressGroup = { id: v.progressGroup.id, name: v.progressGroup.name, weak: v.progressGroup.weak };
    }
    out.push(ev);
  }
  for (const s of resp.statuses) {
    const ev: StatusEvent = {
      type: "status",
      vertex: s.vertex,
      id: s.ID,
      name: s.name,
      current: Number(s.current),
      total: Number(s.total),
      done: s.completed !== undefined,
    };
    setIf(ev, "timestampMs", tsMillis(s.timestamp));
    setIf(ev, "startedMs", tsMillis(s.started));
    setIf(ev, "completedMs", tsMillis(s.completed));
    out.push(ev);
  }
  for (const l of resp.logs) {
    const ev: LogEvent = { type: "log", vertex: l.vertex, stream: Number(l.stream), data: l.msg };
    setIf(ev, "timestampMs", tsMillis(l.timestamp));
    out.push(ev);
  }
  for (const w of resp.warnings) {
    const ev: WarningEvent = {
      type: "warning",
      vertex: w.vertex,
      level: Number(w.level),
      short: text.decode(w.short),
      detail: w.detail.map((d) => text.decode(d)),
    };
    if (w.url) ev.url = w.url;
    if (w.info?.filename) ev.file = w.info.filename;
    if (w.ranges.length > 0) {
      ev.ranges = w.ranges.map((r) => ({
        start: { line: r.start?.line ?? 0, character: r.start?.character ?? 0 },
        end: { line: r.end?.line ?? 0, character: r.end?.character ?? 0 },
      }));
    }
    out.push(ev);
  }
  return out;
}

/** Sets an optional property only when defined (exactOptionalPropertyTypes-friendly). */
function setIf<T extends object, K extends keyof T>(obj: T, key: K, value: T[K] | undefined): void {
  if (value !== undefined) obj[key] = value;
}
