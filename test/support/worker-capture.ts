import { createRequire, syncBuiltinESMExports } from "node:module";
import type { Worker } from "node:worker_threads";

/**
 * Every worker thread started after this module loads, for fault injection (a test terminates
 * the one a module under test started, to see how it copes). Import it before the first worker
 * starts: it replaces node:worker_threads' Worker with a subclass that records instances.
 */
export const startedWorkers: Worker[] = [];

const threads = createRequire(import.meta.url)("node:worker_threads") as { Worker: typeof Worker };
const Original = threads.Worker;
threads.Worker = class extends Original {
  constructor(...args: ConstructorParameters<typeof Worker>) {
    super(...args);
    startedWorkers.push(this);
  }
};
// ESM importers of node:worker_threads see the replacement too.
syncBuiltinESMExports();
