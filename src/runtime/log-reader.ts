import { open } from "node:fs/promises";
import { throwIfAborted } from "../util/index.js";
import { timeToNanos } from "./rfc3339.js";
import type { LogEntry, LogsOptions } from "./types.js";

export interface LogFollow {
  /** Changes whenever lines are appended or the container stops. */
  version(): number;
  /** Resolves once version() differs from v (or after a while, or on abort). */
  waitChange(v: number, signal?: AbortSignal): Promise<void>;
  isRunning(): boolean;
}

const CHUNK = 256 * 1024;

/** Streams the json-file log: optional since/tail filters, then (with follow) new lines until the container stops. */
export async function* readJsonLog(
  path: string,
  opts: LogsOptions,
  follow: LogFollow,
): AsyncGenerator<LogEntry> {
  const since =
    opts.since === undefined
      ? undefined
      : opts.since instanceof Date
        ? BigInt(opts.since.getTime()) * 1_000_000n
        : BigInt(Math.round(opts.since * 1e6)) * 1000n;
  const keep = (e: LogEntry) => since === undefined || timeToNanos(e.time) >= since;
  let skip = 0;
  if (opts.tail !== undefined && opts.tail >= 0) {
    let total = 0;
    for await (const e of lines(path, 0, opts.signal)) if (keep(e.entry)) total++;
    skip = Math.max(0, total - opts.tail);
  }
  const format = (e: LogEntry): LogEntry => (opts.timestamps ? { ...e, line: `${e.time} ${e.line}` } : e);
  let pos = 0;
  for (;;) {
    const v = follow.version();
    const running = follow.isRunning();
    for await (const e of lines(path, pos, opts.signal)) {
      pos = e.next;
      if (!keep(e.entry)) continue;
      if (skip > 0) {
        skip--;
        continue;
      }
      yield format(e.entry);
    }
    if (!opts.follow || !running) return;
    await follow.waitChange(v, opts.signal);
    throwIfAborted(opts.signal);
  }
}

/** Complete JSON lines from byte offset `from`, each with the offset just after it. */
async function* lines(
  path: string,
  from: number,
  signal: AbortSignal | undefined,
): AsyncGenerator<{ entry: LogEntry; next: number }> {
  let fh: Awaited<ReturnType<typeof open>>;
  try {
    fh = await open(path, "r");
  } catch {
    return;
  }
  try {
    const buf = Buffer.allocUnsafe(CHUNK);
    let carry = Buffer.alloc(0);
    let pos = from;
    for (;;) {
      throwIfAborted(signal);
      const { bytesRead } = await fh.read(buf, 0, CHUNK, pos + carry.length);
      if (bytesRead === 0) return;
      const data = carry.length
        ? Buffer.concat([carry, buf.subarray(0, bytesRead)])
        : buf.subarray(0, bytesRead);
      let start = 0;
      for (let nl = data.indexOf(10); nl !== -1; nl = data.indexOf(10, start)) {
        const raw = JSON.parse(data.subarray(start, nl).toString("utf8")) as {
          log: string;
          stream: string;
          time: string;
        };
        start = nl + 1;
        yield {
          entry: { stream: raw.stream === "stderr" ? "stderr" : "stdout", line: raw.log, time: raw.time },
          next: pos + start,
        };
      }
      pos += start;
      carry = Buffer.from(data.subarray(start));
    }
  } finally {
    await fh.close();
  }
}
