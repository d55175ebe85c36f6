import { type FSWatcher, watch } from "node:fs";
import { open, stat, truncate } from "node:fs/promises";
import { rfc3339Nano } from "./rfc3339.js";

export type StreamName = "stdout" | "stderr";
/** What a pump has committed: raw bytes consumed per stream, and the json log's size after them. */
export type Offsets = Record<StreamName, number> & { logSize: number };

const CHUNK = 1024 * 1024;
/** Like Docker: a line longer than this is logged in pieces rather than held back. */
const MAX_LINE = 16 * 1024;
const POLL_MS = 250;

/**
 * Turns the container's raw stdout/stderr files (written by runc, see runc.ts) into Docker json-file
 * lines `{"log","stream","time"}`. The raw offsets consumed so far are persisted by the caller together
 * with the json log's size, so a restarted daemon resumes exactly where the last one stopped: an append
 * the last daemon made but did not get to commit (killed in between) is cut off the log and converted
 * again, so no line is lost or repeated. Timestamps are when the daemon read the line: accurate to the
 * inotify latency while the daemon runs, the re-attach time for output written while it was down.
 */
export class LogPump {
  private watchers: FSWatcher[] = [];
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private again = false;
  /** Whether the first drain has checked the log against `offsets.logSize` (see recoverLog). */
  private recovered = false;

  constructor(
    private readonly raw: Record<StreamName, string>,
    private readonly jsonPath: string,
    private offsets: Offsets,
    private readonly saveOffsets: (o: Offsets) => void,
    private readonly onAppend: () => void,
  ) {}

  /** Follows the raw files until stop(). */
  watch(): void {
    this.unwatch();
    for (const file of Object.values(this.raw)) {
      try {
        const w = watch(file, () => this.kick());
        w.on("error", () => {});
        this.watchers.push(w);
      } catch {
        // Missing file: the poll below still notices when it appears.
      }
    }
    this.timer = setInterval(() => this.kick(), POLL_MS);
    this.timer.unref();
    this.kick();
  }

  unwatch(): void {
    for (const w of this.watchers) w.close();
    this.watchers = [];
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  private kick(): void {
    void this.drain(false).catch(() => {});
  }

  /** Converts everything written so far; final also flushes a trailing partial line (the writer is gone). */
  drain(final: boolean): Promise<void> {
    if (this.running) {
      if (!final) {
        this.again = true;
        return this.running;
      }
      return this.running.then(() => this.drain(true));
    }
    this.running = (async () => {
      try {
        if (!this.recovered) {
          this.offsets.logSize = await this.recoverLog();
          this.recovered = true;
        }
        do {
          this.again = false;
          let appended = false;
          for (const stream of ["stdout", "stderr"] as const)
            appended = (await this.drainOne(stream, final)) || appended;
          if (appended) {
            this.saveOffsets({ ...this.offsets });
            this.onAppend();
          }
        } while (this.again);
      } finally {
        this.running = undefined;
      }
    })();
    return this.running;
  }

  /** After a final drain: empties the raw files for the next run so they do not grow without bound. */
  async reset(): Promise<void> {
    await this.drain(true);
    for (const file of Object.values(this.raw)) await truncate(file, 0).catch(() => {});
    this.offsets = { stdout: 0, stderr: 0, logSize: this.offsets.logSize };
    this.saveOffsets({ ...this.offsets });
  }

  /**
   * Appends and returns the log's new size, measured rather than counted: someone may have emptied
   * the log by hand (its path is in inspect's LogPath), as is common with Docker's json logs.
   */
  private async append(bytes: Buffer): Promise<number> {
    const log = await open(this.jsonPath, "a");
    try {
      const before = (await log.stat()).size;
      try {
        await log.writeFile(bytes);
      } catch (err) {
        // A failed append (ENOSPC) may have written part of a line: cut it so the next try starts clean.
        await log.truncate(before).catch(() => {});
        throw err;
      }
      return before + bytes.length;
    } finally {
      await log.close();
    }
  }

  /** Cuts an uncommitted append off the log (see the class comment) and returns the log's size. */
  private async recoverLog(): Promise<number> {
    const size = await stat(this.jsonPath).then(
      (s) => s.size,
      () => 0,
    );
    const committed = this.offsets.logSize;
    // -1: offsets saved before the size was kept; the log is taken as it is.
    if (committed < 0 || size <= committed) return size;
    await truncate(this.jsonPath, committed);
    return committed;
  }

  private async drainOne(stream: StreamName, final: boolean): Promise<boolean> {
    let fh: Awaited<ReturnType<typeof open>>;
    try {
      fh = await open(this.raw[stream], "r");
    } catch {
      return false;
    }
    let appended = false;
    try {
      const buf = Buffer.allocUnsafe(CHUNK);
      for (;;) {
        const { bytesRead } = await fh.read(buf, 0, CHUNK, this.offsets[stream]);
        if (bytesRead === 0) break;
        const data = buf.subarray(0, bytesRead);
        const time = rfc3339Nano();
        let out = "";
        let start = 0;
        for (let nl = data.indexOf(10); nl !== -1; nl = data.indexOf(10, start)) {
          out += entry(data.subarray(start, nl + 1), stream, time);
          start = nl + 1;
        }
        const rest = data.length - start;
        const atEof = bytesRead < CHUNK;
        if (rest > 0 && (rest >= MAX_LINE || (final && atEof) || (start === 0 && !atEof))) {
          out += entry(data.subarray(start), stream, time);
          start = data.length;
        }
        if (out) {
          this.offsets.logSize = await this.append(Buffer.from(out));
          appended = true;
        }
        this.offsets[stream] += start;
        if (atEof || start === 0) break;
      }
    } finally {
      await fh.close();
    }
    return appended;
  }
}

function entry(bytes: Buffer, stream: StreamName, time: string): string {
  return `${JSON.stringify({ log: bytes.toString("utf8"), stream, time })}\n`;
}
