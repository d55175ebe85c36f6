import net from "node:net";
import type { Duplex, Writable } from "node:stream";
import tls from "node:tls";

/** How long reading stops once small writes arrive back to back. */
const PAUSE_MS = 2;
/** Reads less than 1 ms apart before pacing starts: request/response traffic never gets there. */
const BURST_READS = 32;
/** A read this large already carries many messages: no pause (bulk bytes keep full speed). */
const SMALL_READ = 8 << 10;

export interface PacedPipe {
  /** How many times reading was paused (for tests). */
  readonly pauses: number;
}

/**
 * `from.pipe(to)`, except that when the client streams many small writes
 * back to back, reading from the kernel stops for PAUSE_MS after each read,
 * so the next read takes what arrived meanwhile in one piece.
 *
 * Why: buildx sends a build context's file list as one ~375-byte HTTP/2
 * frame per file. Relayed one by one, a cached 20,000-file build woke the
 * daemon, the sandbox's proxy and buildkitd ~3,000 times each, and the
 * daemon alone spent 140-180 ms of CPU on it (most in the kernel's task
 * switching), on the same two cores as the client's sender. Paced, the
 * build took 57-68 ms less (medians of 15, interleaved with an unpaced
 * daemon) and trivial builds the same. Only coalescing the writes, with
 * every read still waking the daemon, gained nothing measurable.
 *
 * Node has no public way to stop a socket's kernel reads (pause() only
 * stops 'data' events; reading goes on until the stream's buffer is full),
 * so this uses the socket handle's readStop/readStart, as net.Socket does
 * itself, and keeps the handle's `reading` flag as Node expects it: Node
 * only restarts reading when that flag says it is stopped. Sockets without
 * such a handle (TLS) are piped plainly.
 */
export function pacedPipe(from: Duplex, to: Writable): PacedPipe {
  const stats = { pauses: 0 };
  // pipe() moves the bytes (backpressure, end, an end already seen); the listener below only paces.
  from.pipe(to);
  const handle = plainHandle(from);
  if (!handle) return stats;
  let paused = false;
  let last = 0;
  let burst = 0;
  from.on("data", (chunk: Buffer) => {
    const now = performance.now();
    burst = now - last < 1 ? burst + 1 : 0;
    last = now;
    // Only while Node believes the handle reads: otherwise Node stopped it (backpressure) and
    // restarts it itself; a readStart of ours then would make Node's fail (EALREADY) and kill the socket.
    if (paused || burst < BURST_READS || chunk.length >= SMALL_READ || !handle.reading) return;
    paused = true;
    stats.pauses++;
    handle.readStop();
    setTimeout(() => {
      paused = false;
      // The read after a pause counts as part of the burst when data was waiting.
      last = performance.now();
      if (!from.destroyed && handle.reading) handle.readStart();
    }, PAUSE_MS);
  });
  return stats;
}

interface ReadHandle {
  reading: boolean;
  readStop(): number;
  readStart(): number;
}

/** The socket's libuv stream handle, when it is a plain (non-TLS) net.Socket. */
function plainHandle(s: Duplex): ReadHandle | undefined {
  if (!(s instanceof net.Socket) || s instanceof tls.TLSSocket) return undefined;
  const h = (s as unknown as { _handle?: Partial<ReadHandle> })._handle;
  if (!h || typeof h.readStop !== "function" || typeof h.readStart !== "function") return undefined;
  if (typeof h.reading !== "boolean") return undefined;
  return h as ReadHandle;
}
