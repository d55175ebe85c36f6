import { spawn } from "node:child_process";
import { PassThrough, type Readable } from "node:stream";
import { createGunzip } from "node:zlib";
import { BuildError } from "./errors.js";

export type ContextCompression = "none" | "gzip" | "bzip2" | "xz" | "zstd";

/** The compression of a build context, by magic number (as dockerd's DecompressStream). */
export function detectCompression(head: Buffer): ContextCompression {
  if (head.length >= 3 && head[0] === 0x1f && head[1] === 0x8b && head[2] === 0x08) return "gzip";
  if (head.length >= 3 && head.subarray(0, 3).toString("latin1") === "BZh") return "bzip2";
  if (head.length >= 6 && head.subarray(0, 6).equals(Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]))) {
    return "xz";
  }
  if (head.length >= 4 && head.readUInt32LE(0) === 0xfd2fb528) return "zstd";
  return "none";
}

/** Reads at least n bytes (or all there is) without consuming them from the caller's point of view. */
async function peek(input: Readable, n: number): Promise<{ head: Buffer; stream: Readable }> {
  const chunks: Buffer[] = [];
  let len = 0;
  const ended = await new Promise<boolean>((resolve, reject) => {
    const onReadable = () => {
      while (len < n) {
        const c = input.read() as Buffer | null;
        if (c === null) break;
        chunks.push(c);
        len += c.length;
      }
      if (len >= n) finish(false);
    };
    const onEnd = () => finish(true);
    const onError = (err: Error) => {
      cleanup();
      reject(err);
    };
    const cleanup = () => {
      input.off("readable", onReadable);
      input.off("end", onEnd);
      input.off("error", onError);
    };
    const finish = (atEnd: boolean) => {
      cleanup();
      resolve(atEnd);
    };
    input.on("readable", onReadable);
    input.once("end", onEnd);
    input.once("error", onError);
  });
  const head = Buffer.concat(chunks);
  // A fresh stream rather than unshift(): unshifting into a stream that already saw its end loses the data.
  const stream = new PassThrough();
  if (head.length) stream.write(head);
  if (ended) stream.end();
  else {
    input.once("error", (err) => stream.destroy(err));
    input.pipe(stream);
  }
  return { head, stream };
}

/** Runs `xz -dc` / `bzip2 -dc`: Node has no decoder for either and none is installed as a package. */
function childDecompress(tool: string, input: Readable, signal: AbortSignal): Readable {
  const child = spawn(tool, ["-dc"], { stdio: ["pipe", "pipe", "pipe"], signal });
  const out = new PassThrough();
  let stderr = "";
  child.stderr.on("data", (d: Buffer) => {
    if (stderr.length < 4096) stderr += d.toString();
  });
  child.on("error", (err) => out.destroy(err));
  // The tar reader may stop early (bad entry): our pipe to the child then breaks, which is fine.
  child.stdin.on("error", () => {});
  input.on("error", (err) => out.destroy(err));
  input.pipe(child.stdin);
  child.stdout.pipe(out, { end: false });
  let stdoutDone = false;
  let exit: number | null | undefined;
  const settle = () => {
    if (!stdoutDone || exit === undefined) return;
    if (exit === 0) out.end();
    else out.destroy(new Error(`${tool}: ${stderr.trim() || `exit status ${exit}`}`));
  };
  child.stdout.on("end", () => {
    stdoutDone = true;
    settle();
  });
  child.on("close", (code) => {
    exit = code;
    stdoutDone = true;
    settle();
  });
  out.on("close", () => {
    if (child.exitCode === null) child.kill("SIGKILL");
    input.unpipe(child.stdin);
  });
  return out;
}

/** The tar stream inside a possibly compressed body. */
export async function decompressedContext(input: Readable, signal: AbortSignal): Promise<Readable> {
  const { head, stream } = await peek(input, 6);
  const kind = detectCompression(head);
  switch (kind) {
    case "none":
      return stream;
    case "gzip": {
      const gunzip = createGunzip();
      stream.on("error", (err) => gunzip.destroy(err));
      return stream.pipe(gunzip);
    }
    case "bzip2":
      return childDecompress("bzip2", stream, signal);
    case "xz":
      return childDecompress("xz", stream, signal);
    case "zstd":
      throw new BuildError(
        "invalid_context",
        "failed to read build context: zstd-compressed contexts are not supported (send tar, gzip, bzip2 or xz)",
      );
  }
}
