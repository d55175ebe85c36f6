import { createRequire, syncBuiltinESMExports } from "node:module";
import type { Worker } from "node:worker_threads";

/**
 * Every worker thread started after this module loads, for fault injection (a test terminates
 * the one a module under test started, to see how it copes). Import it before the first worker
 * starts: it replaces node:worker_threads' Worker with a subclass that records instances.
 */
export const startedWorkers: Worker[] = [];

/** Workers whose posted messages are dropped instead of sent. */
const held = new WeakSet<Worker>();

/**
 * Keeps what is posted to `worker` from reaching it, as a thread that fell behind would: a test then
 * stops it with work outstanding, however fast this machine's thread would have done that work.
 */
export function holdMessages(worker: Worker): void {
  held.add(worker);
}

const threads = createRequire(import.meta.url)("node:worker_threads") as { Worker: typeof Worker };
const Original = threads.Worker;
threads.Worker = class extends Original {
  constructor(...args: ConstructorParameters<typeof Worker>) {
    super(...args);
    startedWorkers.push(this);
  }

  override postMessage(...args: Parameters<Worker["postMessage"]>): void {
    if (!held.has(this)) super.postMessage(...args);
  }
};
// ESM importers of node:worker_threads see the replacement too.
syncBuiltinESMExports();
