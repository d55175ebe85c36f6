import type net from "node:net";

const SMALL = 16 * 1024;
const BIG = 1024 * 1024;

/** Receives each chunk read from upstream; the chunk's memory is reused once `release` is called. */
export type ChunkSink = (chunk: Buffer, release: () => void) => void;

/**
 * Reads an upstream socket (net.connect's `onread`) into buffers it reuses
 * and hands each chunk to a sink without copying; reading pauses until the
 * sink releases the chunk, so memory per connection is bounded. Buffers start
 * small (an idle tunnel holds 16 KiB) and grow to 1 MiB while reads fill
 * them: a bulk download takes 1/16 of the reads and writes Node's default
 * 64 KiB reads would, which doubles what one core relays.
 */
export class UpstreamReader {
  private readonly small = Buffer.allocUnsafeSlow(SMALL);
  private big: Buffer | undefined;
  private lastRead = 0;
  private lastSize = SMALL;
  private sink: ChunkSink | undefined;
  private pending: Buffer | undefined;
  private socket: net.Socket | undefined;

  /** The `onread` option for net.connect. */
  readonly onread = {
    buffer: () => this.nextBuffer(),
    callback: (n: number, buf: Uint8Array) => this.deliver(n, buf),
  };

  attach(socket: net.Socket): void {
    this.socket = socket;
  }

  /** Starts delivery (a chunk that arrived before, e.g. a server's greeting, comes first). */
  setSink(sink: ChunkSink): void {
    this.sink = sink;
    const p = this.pending;
    this.pending = undefined;
    if (p) sink(p, this.release);
  }

  /** Set while a chunk is being handed over; a release during it means "keep reading". */
  private delivering = false;
  private releasedEarly = false;

  private readonly release = () => {
    if (this.delivering) this.releasedEarly = true;
    else if (this.socket && !this.socket.destroyed) this.socket.resume();
  };

  private nextBuffer(): Buffer {
    // Called after every read, while the last chunk may still be in use: that
    // is safe because no read happens before release().
    if (this.lastRead >= this.lastSize) {
      this.big ??= Buffer.allocUnsafeSlow(BIG);
      return this.big;
    }
    if (this.lastRead < SMALL) {
      this.big = undefined;
      return this.small;
    }
    return this.big ?? this.small;
  }

  private deliver(n: number, buf: Uint8Array): boolean {
    this.lastRead = n;
    this.lastSize = buf.length;
    const chunk = Buffer.from(buf.buffer, buf.byteOffset, n);
    if (!this.sink) {
      this.pending = chunk;
      return false; // pause until a sink takes it
    }
    this.delivering = true;
    this.releasedEarly = false;
    try {
      this.sink(chunk, this.release);
    } finally {
      this.delivering = false;
    }
    // Released already (the sink copied or skipped it): read on; otherwise pause until release().
    return this.releasedEarly;
  }
}
