import type { Socket } from "node:net";
import { abortReason } from "../util/index.js";
import { TransportError, toTransportError } from "./errors.js";

/** A handshake reply longer than this is not a hybrid-vsock muxer talking. */
const MAX_REPLY_LINE = 256;
/** How long a given-up handshake keeps its socket open for the OK that may still come. */
const LINGER_MS = 30_000;

/**
 * Firecracker / Cloud Hypervisor "hybrid vsock": the host side connects to the
 * VMM's unix socket, writes "CONNECT <port>\n" and gets "OK <assigned>\n";
 * from then on the socket is the raw guest channel. No library does this.
 * Bytes that arrive in the same chunk after the OK line belong to the channel
 * and are pushed back with unshift().
 *
 * A caller that gives up (timeout, abort) gets its rejection at once, but the
 * socket stays open until the muxer answers or hangs up (bounded): a muxer
 * that writes its OK to a socket the host already closed may fail hard
 * (vhost-device-vsock 0.3.0 panics on that EPIPE and its vsock device stops).
 */
export function hybridVsockHandshake(
  socket: Socket,
  port: number,
  what: string,
  opts: { signal?: AbortSignal | undefined; timeoutMs: number },
): Promise<Socket> {
  return new Promise<Socket>((resolve, reject) => {
    const { signal } = opts;
    let received: Uint8Array = new Uint8Array(0);
    const cleanup = () => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", onAbort);
      // Removing the last 'readable' listener leaves the stream neither
      // flowing nor explicitly paused, so the next consumer starts it normally.
      socket.off("readable", onReadable);
      socket.off("error", onError);
      socket.off("end", onEnd);
    };
    const fail = (err: TransportError) => {
      cleanup();
      socket.destroy();
      reject(err);
    };
    /** Gives up without closing before the muxer's answer: see above. */
    const giveUp = (err: TransportError) => {
      cleanup();
      reject(err);
      const close = () => {
        clearTimeout(linger);
        socket.destroy();
      };
      const linger = setTimeout(close, LINGER_MS);
      linger.unref();
      socket.on("error", () => {});
      socket.once("data", close);
      socket.once("end", close);
      socket.once("close", close);
      socket.resume();
    };
    const onReadable = () => {
      for (
        let chunk = socket.read() as Uint8Array | null;
        chunk !== null;
        chunk = socket.read() as Uint8Array | null
      ) {
        received = append(received, chunk);
        const nl = received.indexOf(0x0a);
        if (nl < 0) {
          if (received.length > MAX_REPLY_LINE) return fail(badReply(latin1(received)));
          continue;
        }
        const line = latin1(received.subarray(0, nl)).replace(/\r$/, "");
        if (!/^OK \S/.test(line)) return fail(badReply(line));
        const rest = received.subarray(nl + 1);
        cleanup();
        if (rest.length > 0) socket.unshift(rest);
        return resolve(withoutHalfClose(socket));
      }
    };
    const badReply = (line: string) =>
      new TransportError(
        "handshake_failed",
        `${what}: hybrid vsock handshake for port ${port} failed: expected "OK <port>", got ${JSON.stringify(line)}`,
      );
    const onEnd = () =>
      fail(
        new TransportError(
          "handshake_failed",
          `${what}: connection closed during hybrid vsock handshake for port ${port}` +
            (received.length ? ` after ${JSON.stringify(latin1(received))}` : ""),
        ),
      );
    const onError = (err: Error) => fail(toTransportError(err, `${what}: hybrid vsock handshake`));
    const onAbort = () =>
      giveUp(
        new TransportError("aborted", `${what}: aborted`, { cause: abortReason(signal as AbortSignal) }),
      );
    const timer = setTimeout(
      () =>
        giveUp(
          new TransportError(
            "timeout",
            `${what}: no reply to "CONNECT ${port}" within ${opts.timeoutMs}ms (hybrid vsock handshake)`,
          ),
        ),
      opts.timeoutMs,
    );
    socket.on("readable", onReadable);
    socket.once("error", onError);
    socket.once("end", onEnd);
    if (signal?.aborted) return onAbort();
    signal?.addEventListener("abort", onAbort, { once: true });
    socket.write(`CONNECT ${port}\n`);
  });
}

function append(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

function latin1(u: Uint8Array): string {
  return Buffer.from(u.buffer, u.byteOffset, u.byteLength).toString("latin1");
}

/**
 * The muxer takes a host-side shutdown(SHUT_WR) for a full close (the guest
 * loses what it was still sending back), so end() never half-closes this
 * socket: what runs over the channel frames its own ends (HTTP/2), and the
 * socket closes when the guest closes or the host destroys it.
 */
function withoutHalfClose(socket: Socket): Socket {
  socket._final = (cb: (err?: Error | null) => void) => cb();
  return socket;
}
