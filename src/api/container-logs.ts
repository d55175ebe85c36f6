import type { ServerResponse } from "node:http";
import type { ContainerInspect, Runtime } from "../runtime/index.js";
import { frame, STDERR, STDOUT, streamContentType, writeWithBackpressure } from "./container-stream.js";
import { ApiError } from "./errors.js";
import { boolValue } from "./query-params.js";

/** A `since`/`until` value as the docker CLI sends it (`seconds[.nanoseconds]`) in nanoseconds; 0n when unset. */
function timestampParam(query: URLSearchParams, key: string): bigint {
  const v = query.get(key);
  if (!v) return 0n;
  const m = /^(\d+)(?:\.(\d{1,9}))?$/.exec(v);
  if (!m) throw new ApiError("invalid_parameter", `invalid value for ${key}: ${JSON.stringify(v)}`);
  return BigInt(m[1] as string) * 1_000_000_000n + BigInt((m[2] ?? "").padEnd(9, "0"));
}

/** json-file times are RFC 3339 with nine fractional digits. */
function timeNanos(t: string): bigint {
  const m = /^(.*?)(?:\.(\d+))?Z$/.exec(t);
  const secs = BigInt(Math.floor(Date.parse(`${m?.[1] ?? t}Z`) / 1000));
  return secs * 1_000_000_000n + BigInt((m?.[2] ?? "").padEnd(9, "0").slice(0, 9));
}

/**
 * GET /containers/{id}/logs: the json-file log as a multiplexed stream (raw for a TTY container),
 * filtered by stream, since, until and tail, optionally timestamped, following while it runs.
 */
export async function streamLogs(
  runtime: Pick<Runtime, "logs">,
  c: ContainerInspect,
  query: URLSearchParams,
  apiVersion: string,
  res: ServerResponse,
  signal: AbortSignal,
): Promise<void> {
  const want = { stdout: boolValue(query, "stdout"), stderr: boolValue(query, "stderr") };
  if (!want.stdout && !want.stderr)
    throw new ApiError("invalid_parameter", "Bad parameters: you must choose at least one stream");
  const since = timestampParam(query, "since");
  const until = timestampParam(query, "until");
  const tailRaw = (query.get("tail") ?? "").trim();
  const tail = /^\d+$/.test(tailRaw) ? Number(tailRaw) : undefined;
  const timestamps = boolValue(query, "timestamps");
  const tty = c.Config.Tty;

  // Following stops at `until` even when nothing more is logged.
  const stopAt = new AbortController();
  const untilMs = Number(until / 1_000_000n);
  const timer = until > 0n ? setTimeout(() => stopAt.abort(), Math.max(0, untilMs - Date.now())) : undefined;
  const stop = AbortSignal.any([signal, stopAt.signal]);
  const entries = runtime.logs(c.Id, {
    follow: boolValue(query, "follow"),
    since: since > 0n ? Number(since) / 1e9 : undefined,
    tail,
    signal: stop,
  });

  res.writeHead(200, { "Content-Type": streamContentType(tty, apiVersion) });
  res.flushHeaders();
  try {
    for await (const e of entries) {
      if (!want[e.stream]) continue;
      if (until > 0n && timeNanos(e.time) > until) break;
      const payload = Buffer.from(timestamps ? `${e.time} ${e.line}` : e.line);
      await writeWithBackpressure(
        res,
        tty ? payload : frame(e.stream === "stderr" ? STDERR : STDOUT, payload),
      );
      if (res.destroyed) return;
    }
  } catch (err) {
    if (!stop.aborted) throw err;
  } finally {
    clearTimeout(timer);
  }
  res.end();
}
