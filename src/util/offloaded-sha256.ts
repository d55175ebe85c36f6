import { createHash } from "node:crypto";
import { Worker } from "node:worker_threads";

/** Bytes handed to the hashing thread at a time: few messages, and small blobs never leave this thread. */
const SLOT = 1 << 20;
/** Slots one hash may hold (filling here or with the thread); then it waits. More only adds memory: the thread keeps up. */
const SLOTS_PER_HASH = 4;
/** What an idle hash may keep here (park); more goes to the thread, so idle uploads pin little memory. */
const PARK_INLINE = 64 << 10;
/** Free slots kept for the next hash (the rest go to the garbage collector). */
const KEEP_FREE = 16;

/**
 * The hashing thread, as CommonJS source: evaluated rather than loaded from a file so that the
 * bundled daemon, the tsx-run tests and `node dist/…` all find it the same way.
 */
const WORKER_SOURCE = `
const { parentPort } = require("node:worker_threads");
const { createHash } = require("node:crypto");
const jobs = new Map();
parentPort.on("message", (m) => {
  if (m.drop) { jobs.delete(m.id); return; }
  let h = jobs.get(m.id);
  if (!h) { h = createHash("sha256"); jobs.set(m.id, h); }
  if (m.buf) {
    h.update(new Uint8Array(m.buf, 0, m.len));
    parentPort.postMessage({ id: m.id, back: true });
  }
  if (m.end) {
    jobs.delete(m.id);
    parentPort.postMessage({ id: m.id, digest: h.digest("hex") });
  }
});
`;

interface WorkerReply {
  id: number;
  /** A slot's bytes were hashed: the oldest one sent is free again. */
  back?: boolean;
  digest?: string;
}

interface JobEvents {
  slotBack(): void;
  digest(hex: string): void;
  failed(err: Error): void;
}

const freeSlots: SharedArrayBuffer[] = [];

function takeSlot(): SharedArrayBuffer {
  return freeSlots.pop() ?? new SharedArrayBuffer(SLOT);
}

function giveSlot(b: SharedArrayBuffer): void {
  if (freeSlots.length < KEEP_FREE) freeSlots.push(b);
}

/**
 * One thread hashes for every blob of the process. It keeps the process alive only while a hash
 * waits on it: an upload abandoned half-way must not hold a daemon that is shutting down.
 */
class HashThread {
  readonly #worker: Worker;
  readonly #jobs = new Map<number, JobEvents>();
  #nextId = 1;
  #waits = 0;
  #dead: Error | undefined;

  constructor() {
    // No loaders (tsx in tests): the thread needs only node:crypto.
    this.#worker = new Worker(WORKER_SOURCE, { eval: true, execArgv: [] });
    this.#worker.unref();
    this.#worker.on("message", (m: WorkerReply) => {
      const job = this.#jobs.get(m.id);
      if (!job) return;
      if (m.back) job.slotBack();
      if (m.digest !== undefined) {
        this.#jobs.delete(m.id);
        job.digest(m.digest);
      }
    });
    const fail = (err: Error) => {
      this.#dead ??= new Error(`the hashing thread stopped: ${err.message}`, { cause: err });
      if (thread === this) thread = undefined;
      const jobs = [...this.#jobs.values()];
      this.#jobs.clear();
      for (const j of jobs) j.failed(this.#dead);
    };
    this.#worker.on("error", fail);
    this.#worker.on("exit", (code) => fail(new Error(`exit code ${code}`)));
  }

  start(events: JobEvents): number {
    if (this.#dead) throw this.#dead;
    const id = this.#nextId++;
    this.#jobs.set(id, events);
    return id;
  }

  /** Holds the process while a hash waits for the thread; returns the release. */
  hold(): () => void {
    if (this.#waits++ === 0) this.#worker.ref();
    let held = true;
    return () => {
      if (!held) return;
      held = false;
      if (--this.#waits === 0) this.#worker.unref();
    };
  }

  update(id: number, buf: SharedArrayBuffer, len: number): void {
    this.#worker.postMessage({ id, buf, len });
  }

  finish(id: number): void {
    this.#worker.postMessage({ id, end: true });
  }

  drop(id: number): void {
    if (!this.#jobs.delete(id)) return;
    this.#worker.postMessage({ id, drop: true });
  }
}

let thread: HashThread | undefined;

/**
 * SHA-256 of a stream of chunks, computed on a worker thread once the data
 * passes one slot (1 MiB); smaller data is hashed here at digest().
 *
 * Why: hashing is the largest part of the daemon's CPU when it stores a new
 * blob (0.3 s for 512 MiB on this kind of machine, 40% of a blob upload),
 * and it ran on the event loop, serially with reading the socket and
 * writing the file, and blocking every other request meanwhile. Node's
 * crypto has no asynchronous hash; chunks are copied into shared memory
 * (a tenth of the hashing's cost) and the thread hashes them in order.
 */
export class OffloadedSha256 {
  /** Copies of what came before the first slot: small blobs never take one. */
  #small: Buffer[] = [];
  #smallLen = 0;
  /** The slot filling here. */
  #cur: SharedArrayBuffer | undefined;
  #fill = 0;
  /** Slots with the thread, in the order it gives them back. */
  readonly #inFlight: SharedArrayBuffer[] = [];
  #job: { thread: HashThread; id: number } | undefined;
  #slotWaiter: { resolve(): void; reject(err: Error): void } | undefined;
  /** An update is waiting for a slot: digest() now would miss its bytes. */
  #updating = false;
  #result: Promise<string> | undefined;
  #digestWaiter: { resolve(hex: string): void; reject(err: Error): void } | undefined;
  #failed: Error | undefined;
  #size = 0;
  #offloaded = 0;

  /** Bytes taken so far. */
  get size(): number {
    return this.#size;
  }

  /** Bytes sent to the worker thread (0 for data that stayed within one slot). */
  get offloaded(): number {
    return this.#offloaded;
  }

  /** digest() was called: the hash takes no more bytes. */
  get finished(): boolean {
    return this.#result !== undefined;
  }

  /** The hash cannot go on (disposed, or its thread stopped): its owner hashes the data again. */
  get failed(): boolean {
    return this.#failed !== undefined;
  }

  /**
   * Takes a chunk (copied: the caller may reuse it at once). Returns a promise when the thread
   * is behind and the rest of the chunk waits for a slot (await it before the next update or
   * digest); undefined when all of it was taken.
   */
  update(chunk: Uint8Array): Promise<void> | undefined {
    if (this.#result) throw new Error("hash already finished");
    if (this.#failed) throw this.#failed;
    if (this.#updating) throw new Error("hash update before the previous one was taken");
    const waiting = this.#take(chunk);
    if (!waiting) return undefined;
    this.#updating = true;
    return waiting.finally(() => {
      this.#updating = false;
    });
  }

  /**
   * Between writes of a long-lived hash (an upload between its requests): hands what waits here
   * to the thread, so an idle hash holds no slot and at most PARK_INLINE bytes.
   */
  park(): void {
    if (this.#failed || this.#result || this.#updating) return;
    if (!this.#job && this.#smallLen < PARK_INLINE) return;
    if (!this.#cur && this.#smallLen > 0) this.#moveSmallToSlot();
    if (this.#cur && this.#fill > 0) this.#post();
  }

  /** The hex digest of every byte taken; the hash is finished after this (a second call gives the same). */
  digest(): Promise<string> {
    if (this.#updating) return Promise.reject(new Error("hash digest while an update waits"));
    this.#result ??= this.#digest();
    return this.#result;
  }

  /** Gives the memory back (a hash that will not be finished: a failed write, an abandoned upload). */
  dispose(): void {
    if (this.#job) this.#job.thread.drop(this.#job.id);
    this.#job = undefined;
    this.#fail(new Error("hash disposed"));
    this.#release();
  }

  #take(chunk: Uint8Array): Promise<void> | undefined {
    let off = 0;
    if (!this.#job && !this.#cur) {
      if (this.#smallLen + chunk.length < SLOT) {
        this.#small.push(Buffer.from(chunk));
        this.#smallLen += chunk.length;
        this.#size += chunk.length;
        return undefined;
      }
      this.#moveSmallToSlot();
    }
    while (off < chunk.length) {
      if (!this.#cur) {
        if (this.#inFlight.length >= SLOTS_PER_HASH) {
          const rest = chunk.subarray(off);
          const release = (this.#job as { thread: HashThread }).thread.hold();
          return new Promise<void>((resolve, reject) => {
            this.#slotWaiter = { resolve, reject };
          })
            .finally(release)
            .then(() => this.#take(rest));
        }
        this.#cur = takeSlot();
      }
      const n = Math.min(SLOT - this.#fill, chunk.length - off);
      new Uint8Array(this.#cur).set(chunk.subarray(off, off + n), this.#fill);
      this.#fill += n;
      this.#size += n;
      off += n;
      if (this.#fill === SLOT) this.#post();
    }
    return undefined;
  }

  /** The first slot starts with the small copies (they were counted in size already). */
  #moveSmallToSlot(): void {
    const slot = takeSlot();
    const view = new Uint8Array(slot);
    let at = 0;
    for (const b of this.#small) {
      view.set(b, at);
      at += b.length;
    }
    this.#small = [];
    this.#smallLen = 0;
    this.#cur = slot;
    this.#fill = at;
  }

  #digest(): Promise<string> {
    if (this.#failed) return Promise.reject(this.#failed);
    if (!this.#job) {
      // Never passed one slot: hashed here, and the thread is never involved.
      const h = createHash("sha256");
      for (const b of this.#small) h.update(b);
      this.#release();
      return Promise.resolve(h.digest("hex"));
    }
    const { thread: t, id } = this.#job;
    if (this.#fill > 0) this.#post();
    const release = t.hold();
    return new Promise<string>((resolve, reject) => {
      this.#digestWaiter = { resolve, reject };
      t.finish(id);
    }).finally(() => {
      release();
      this.#digestWaiter = undefined;
      this.#job = undefined;
      this.#release();
    });
  }

  #post(): void {
    const job = this.#startJob();
    const slot = this.#cur as SharedArrayBuffer;
    job.thread.update(job.id, slot, this.#fill);
    this.#inFlight.push(slot);
    this.#offloaded += this.#fill;
    this.#cur = undefined;
    this.#fill = 0;
  }

  #startJob(): { thread: HashThread; id: number } {
    if (this.#job) return this.#job;
    thread ??= new HashThread();
    const t = thread;
    const id = t.start({
      slotBack: () => {
        const slot = this.#inFlight.shift();
        if (slot) giveSlot(slot);
        const w = this.#slotWaiter;
        this.#slotWaiter = undefined;
        w?.resolve();
      },
      digest: (hex) => this.#digestWaiter?.resolve(hex),
      failed: (err) => {
        this.#job = undefined;
        this.#fail(err);
      },
    });
    this.#job = { thread: t, id };
    return this.#job;
  }

  /** Fails whatever waits on the thread: a slot, the digest. */
  #fail(err: Error): void {
    this.#failed ??= err;
    const slot = this.#slotWaiter;
    const digest = this.#digestWaiter;
    this.#slotWaiter = undefined;
    this.#digestWaiter = undefined;
    slot?.reject(this.#failed);
    digest?.reject(this.#failed);
  }

  /**
   * Back to the pool. Slots still with the thread (a disposed hash) are safe to reuse: the thread
   * only reads them, for a job whose result nobody takes.
   */
  #release(): void {
    if (this.#cur) giveSlot(this.#cur);
    for (const s of this.#inFlight.splice(0)) giveSlot(s);
    this.#cur = undefined;
    this.#fill = 0;
    this.#small = [];
    this.#smallLen = 0;
  }
}
