import type { Socket } from "node:net";
import { abortReason } from "../util/index.js";
import { TransportError, toTransportError } from "./errors.js";

/**
 * Waits for a freshly created socket to become usable ("connect" for plain
 * sockets, "secureConnect" for TLS). On abort, timeout or error the socket is
 * destroyed and the failure mapped to a TransportError. The signal governs
 * only the dial: once connected the caller owns the socket.
 */
export function awaitConnected<S extends Socket>(
  socket: S,
  readyEvent: "connect" | "secureConnect",
  what: string,
  opts: { signal?: AbortSignal | undefined; timeoutMs: number },
): Promise<S> {
  return new Promise<S>((resolve, reject) => {
    const { signal } = opts;
    const cleanup = () => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", onAbort);
      socket.off(readyEvent, onReady);
      socket.off("error", onError);
    };
    const fail = (err: TransportError) => {
      cleanup();
      socket.destroy();
      reject(err);
    };
    const onReady = () => {
      cleanup();
      resolve(socket);
    };
    const onError = (err: Error) => fail(toTransportError(err, what));
    const onAbort = () =>
      fail(
        new TransportError("aborted", `${what}: aborted`, {
          cause: abortReason(signal as AbortSignal),
        }),
      );
    const timer = setTimeout(
      () => fail(new TransportError("timeout", `${what}: timed out after ${opts.timeoutMs}ms`)),
      opts.timeoutMs,
    );
    socket.once(readyEvent, onReady);
    socket.once("error", onError);
    if (signal?.aborted) return onAbort();
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}
