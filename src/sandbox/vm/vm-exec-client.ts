import { PassThrough, Writable } from "node:stream";
import type { ExecOptions, ExecProcess } from "../../runtime/index.js";
import { parseDialAddress } from "../../transport/index.js";

// The frames of tools/vm-exec: [kind u8][length u32 BE][payload].
const IN_STDIN = 0;
const IN_CLOSE = 1;
const IN_RESIZE = 2;
const IN_SIGNAL = 3;
const OUT_STDOUT = 1;
const OUT_STDERR = 2;
const OUT_EXIT = 3;
const OUT_FAILED = 4;
/** The guest sends at most 32 KiB per frame; a longer one is a guest misbehaving, not data to buffer. */
const MAX_FRAME = 1 << 20;
const SIGTERM = 15;
const SIGKILL = 9;

function frame(kind: number, payload: Uint8Array = new Uint8Array(0)): Buffer {
  const hdr = Buffer.alloc(5);
  hdr[0] = kind;
  hdr.writeUInt32BE(payload.length, 1);
  return Buffer.concat([hdr, payload]);
}

/**
 * Runs a command in the VM sandbox's guest through its exec service
 * (arca-vm-exec on a vsock port): the same ExecProcess a runc exec gives, so
 * `docker exec arca-buildkit` works alike. Framed both ways: the channel
 * never half-closes, so the end of stdin is a frame.
 */
export async function vmExec(addr: string, o: ExecOptions): Promise<ExecProcess> {
  const sock = await parseDialAddress(addr).dial(o.signal);
  const rows = o.consoleSize?.[0] ?? 0;
  const cols = o.consoleSize?.[1] ?? 0;
  sock.write(
    `${JSON.stringify({ cmd: o.cmd, env: o.env ?? [], workdir: o.workingDir ?? "", tty: o.tty === true, rows, cols })}\n`,
  );
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  let settle: { resolve: (n: number) => void; reject: (e: Error) => void } | undefined;
  const exitCode = new Promise<number>((resolve, reject) => {
    settle = { resolve, reject };
  });
  const end = (err?: Error, code?: number) => {
    if (!settle) return;
    const s = settle;
    settle = undefined;
    stdout.end();
    stderr.end();
    sock.destroy();
    if (err) s.reject(err);
    else s.resolve(code ?? 0);
  };
  let buf: Buffer = Buffer.alloc(0);
  sock.on("data", (d: Buffer) => {
    buf = buf.length ? Buffer.concat([buf, d]) : d;
    while (buf.length >= 5) {
      const len = buf.readUInt32BE(1);
      if (len > MAX_FRAME)
        return end(new Error(`exec in the VM sandbox: a ${len}-byte frame from the guest`));
      if (buf.length < 5 + len) break;
      const kind = buf[0];
      const payload = buf.subarray(5, 5 + len);
      buf = buf.subarray(5 + len);
      if (kind === OUT_STDOUT) stdout.write(Buffer.from(payload));
      else if (kind === OUT_STDERR) stderr.write(Buffer.from(payload));
      else if (kind === OUT_EXIT) {
        if (payload.length !== 4) return end(new Error("exec in the VM sandbox: a malformed exit frame"));
        return end(undefined, payload.readInt32BE(0));
      } else if (kind === OUT_FAILED) return end(new Error(`exec in the VM sandbox: ${payload.toString()}`));
    }
  });
  sock.on("error", () => {});
  sock.on("close", () => end(new Error("lost the connection to the VM sandbox's exec service")));
  const stdin = new Writable({
    write(chunk: Buffer, _enc, cb) {
      if (sock.destroyed) return cb();
      sock.write(frame(IN_STDIN, chunk), () => cb());
    },
    final(cb) {
      if (!sock.destroyed) sock.write(frame(IN_CLOSE));
      cb();
    },
  });
  stdin.on("error", () => {});
  if (o.signal) {
    const onAbort = () => {
      if (sock.destroyed) return;
      sock.write(frame(IN_SIGNAL, Uint8Array.of(SIGTERM)));
      setTimeout(() => sock.destroyed || sock.write(frame(IN_SIGNAL, Uint8Array.of(SIGKILL))), 2000).unref();
    };
    o.signal.addEventListener("abort", onAbort, { once: true });
    void exitCode.finally(() => o.signal?.removeEventListener("abort", onAbort)).catch(() => {});
  }
  const resize = o.tty
    ? async (r: number, c: number) => {
        const p = Buffer.alloc(4);
        p.writeUInt16BE(r, 0);
        p.writeUInt16BE(c, 2);
        if (!sock.destroyed) sock.write(frame(IN_RESIZE, p));
      }
    : undefined;
  return { stdout, stderr, stdin, exitCode, ...(resize ? { resize } : {}) };
}
