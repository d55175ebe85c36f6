import { createWriteStream, type WriteStream } from "node:fs";
import { mkdir } from "node:fs/promises";
import path from "node:path";
import type { EgressAuditRecord } from "./audit-record.js";

/**
 * The append-only JSONL audit log. Opened with 'a' so every line lands at the
 * end whatever else appends; records are queued in the stream, never awaited
 * on the request path.
 */
export class AuditLog {
  private stream: WriteStream | undefined;
  private failed = false;

  constructor(
    readonly file: string,
    private readonly log: (line: string) => void,
  ) {}

  async open(): Promise<void> {
    await mkdir(path.dirname(this.file), { recursive: true });
    const stream = createWriteStream(this.file, { flags: "a", mode: 0o640 });
    await new Promise<void>((resolve, reject) => {
      stream.once("open", () => resolve());
      stream.once("error", reject);
    });
    stream.on("error", (err) => {
      if (!this.failed) this.log(`egress: audit log ${this.file}: ${err.message}`);
      this.failed = true;
    });
    this.stream = stream;
  }

  append(record: EgressAuditRecord): void {
    this.stream?.write(`${JSON.stringify(record)}\n`);
  }

  async close(): Promise<void> {
    const s = this.stream;
    this.stream = undefined;
    if (s) await new Promise<void>((resolve) => s.end(() => resolve()));
  }
}
