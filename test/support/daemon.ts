import { type ChildProcess, spawn } from "node:child_process";
import path from "node:path";

const repo = path.resolve(import.meta.dirname, "../..");

export interface DaemonProc {
  proc: ChildProcess;
  /** Everything the daemon printed so far. */
  output(): string;
  /** Waits until the output matches (or the daemon exits / the time runs out). */
  waitFor(re: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>;
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/**
 * Starts the real `arca daemon` (through tsx) on a data root, its API on `socket` (default
 * `<dataRoot>/arca.sock`), with any further daemon flags. `bundled`: the shipped entry point
 * (`bin/arca.js`, `npm run build`'s bundle) instead, as benchmarks measure what users run (tsx's
 * loader alone holds ~30-60 MB of the daemon's RSS).
 */
export function startDaemon(
  dataRoot: string,
  socket = path.join(dataRoot, "arca.sock"),
  flags: string[] = [],
  opts: { bundled?: boolean } = {},
): DaemonProc {
  const entry = opts.bundled
    ? [path.join(repo, "bin/arca.js")]
    : ["--import", "tsx", path.join(repo, "src/cli/run.ts")];
  const proc = spawn(
    process.execPath,
    [...entry, "daemon", "--data-root", dataRoot, "--socket", socket, ...flags],
    { cwd: repo, stdio: ["ignore", "pipe", "pipe"] },
  );
  let out = "";
  const waiters = new Set<() => void>();
  const onData = (d: Buffer) => {
    out += d.toString();
    for (const w of waiters) w();
  };
  proc.stdout?.on("data", onData);
  proc.stderr?.on("data", onData);
  const exited = new Promise<number | null>((resolve) =>
    proc.once("exit", (code) => {
      for (const w of waiters) w();
      resolve(code);
    }),
  );
  return {
    proc,
    output: () => out,
    waitFor(re, timeoutMs = 120_000) {
      return new Promise((resolve, reject) => {
        const check = () => {
          const m = out.match(re);
          if (m) {
            done();
            resolve(m);
          } else if (proc.exitCode !== null || proc.signalCode !== null) {
            done();
            reject(new Error(`daemon exited before ${re}:\n${out}`));
          }
        };
        const t = setTimeout(() => {
          done();
          reject(new Error(`timed out waiting for ${re}:\n${out}`));
        }, timeoutMs);
        const done = () => {
          clearTimeout(t);
          waiters.delete(check);
        };
        waiters.add(check);
        check();
      });
    },
    async stop(signal = "SIGTERM") {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
      return exited;
    },
  };
}
