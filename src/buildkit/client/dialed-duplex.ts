import { Duplex } from "node:stream";

/**
 * A Duplex that exists synchronously but is backed by a connection that is
 * still being dialed. node:http2's `createConnection` must return a socket
 * at once, while our dialers are asynchronous (vsock handshakes, TLS): writes
 * are queued until the real connection is there.
 */
export class DialedDuplex extends Duplex {
  #sock: Duplex | undefined;
  #queue: { chunk: Buffer; cb: (err?: Error | null) => void }[] = [];
  #finalCb: ((err?: Error | null) => void) | undefined;

  constructor(dial: Promise<Duplex>) {
    super({ allowHalfOpen: true });
    dial.then(
      (sock) => this.#attach(sock),
      (err: unknown) => this.destroy(err instanceof Error ? err : new Error(String(err))),
    );
  }

  #attach(sock: Duplex): void {
    if (this.destroyed) {
      sock.destroy();
      return;
    }
    this.#sock = sock;
    sock.on("data", (d: Buffer) => {
      if (!this.push(d)) sock.pause();
    });
    sock.on("end", () => this.push(null));
    sock.on("error", (e) => this.destroy(e));
    sock.on("close", () => this.destroy());
    for (const { chunk, cb } of this.#queue.splice(0)) sock.write(chunk, cb);
    if (this.#finalCb) {
      sock.end();
      this.#finalCb();
    }
  }

  override _read(): void {
    this.#sock?.resume();
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    if (this.#sock) this.#sock.write(chunk, cb);
    else this.#queue.push({ chunk, cb });
  }

  override _final(cb: (err?: Error | null) => void): void {
    if (this.#sock) {
      this.#sock.end();
      cb();
    } else this.#finalCb = cb;
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    this.#sock?.destroy();
    for (const q of this.#queue.splice(0)) q.cb(err ?? new Error("connection closed"));
    cb(err);
  }
}
