import { type ChildProcess, execFile, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import type { Readable, Writable } from "node:stream";
import { promisify } from "node:util";
import { RuntimeError } from "./errors.js";
import { stderrOf } from "./overlay.js";

const run = promisify(execFile);

export interface RuncState {
  id: string;
  pid: number;
  status: "creating" | "created" | "running" | "paused" | "stopped";
  bundle: string;
}

export interface RunFiles {
  bundle: string;
  pidFile: string;
  /** runc's own log (JSON lines): where a failed start explains itself. */
  logFile: string;
  /** Written by the wrapper with runc's exit status once the container is gone. */
  exitFile: string;
  stdoutFd: number;
  stderrFd: number;
}

/**
 * Why the supervisor is `sh -c 'runc run …; echo $? > exit-code'` spawned detached, in the foreground:
 * - `runc run` (not `-d`) makes runc the container init's parent and child subreaper, so it learns the
 *   exit status; with `-d` the init is reparented to PID 1 and the status is lost (Node cannot become a
 *   subreaper).
 * - `detached` puts it in its own session, so a daemon crash or Ctrl-C does not take it down, and its
 *   stdio are per-container files opened here, never pipes owned by the daemon, so the container never
 *   gets SIGPIPE when the daemon goes away (runc copies the container's pipes into those files).
 * - the `sh` wrapper records the status in a file, so a restarted daemon that adopts the container (no
 *   longer its child) still learns the exit code; while the daemon lives it gets it from the child.
 */
const MONITOR_SCRIPT = [
  'runc="$1" root="$2" log="$3" bundle="$4" pidfile="$5" id="$6" exitfile="$7"',
  '"$runc" --root "$root" --log "$log" --log-format json run --bundle "$bundle" --pid-file "$pidfile" "$id"',
  "rc=$?",
  'echo "$rc" > "$exitfile.tmp" && mv -f "$exitfile.tmp" "$exitfile"',
  'exit "$rc"',
].join("\n");

/** Resize requests in order over `requests`, each answered by one newline on `acks`. */
function resizer(requests: Writable, acks: Readable): (rows: number, cols: number) => Promise<void> {
  const waiting: (() => void)[] = [];
  const releaseAll = () => {
    for (const w of waiting.splice(0)) w();
  };
  requests.on("error", releaseAll);
  acks.on("data", (d: Buffer) => {
    for (const b of d) if (b === 0x0a) waiting.shift()?.();
  });
  acks.on("close", releaseAll);
  return (rows, cols) =>
    new Promise<void>((resolve) => {
      if (requests.destroyed || acks.destroyed) return resolve();
      // Never hold the API call for long, whatever the relay does.
      const t = setTimeout(resolve, 5000);
      waiting.push(() => {
        clearTimeout(t);
        resolve();
      });
      requests.write(`${rows} ${cols}\n`);
    });
}

/** runc's exec process from flags (utils_linux.go getProcess): the container's process with these changes. */
function execProcessSpec(
  bundle: string,
  o: { args: string[]; env: string[]; user: string; cwd?: string; consoleSize?: [number, number] },
): Record<string, unknown> {
  const base = (
    JSON.parse(readFileSync(path.join(bundle, "config.json"), "utf8")) as { process: Record<string, unknown> }
  ).process;
  const [uid = 0, gid = 0] = o.user.split(":").map(Number);
  const spec: Record<string, unknown> = {
    ...base,
    terminal: true,
    args: o.args,
    env: [...((base.env as string[] | undefined) ?? []), ...o.env],
    user: { ...(base.user as object), uid, gid },
  };
  if (o.cwd) spec.cwd = o.cwd;
  if (o.consoleSize) spec.consoleSize = { height: o.consoleSize[0], width: o.consoleSize[1] };
  return spec;
}

/** A spawned `runc exec` (or its console relay), with piped stdio. */
export type ExecChild = ChildProcess & {
  stdin: Writable;
  stdout: Readable;
  stderr: Readable;
  /** TTY only: sets the terminal size; resolves once applied (or the process is gone). */
  resize?: (rows: number, cols: number) => Promise<void>;
};

/** Thin wrapper over the runc CLI with a private state root. */
export class Runc {
  constructor(
    readonly path: string,
    readonly root: string,
  ) {}

  private async cmd(args: string[], timeoutMs = 30_000): Promise<string> {
    try {
      const { stdout } = await run(this.path, ["--root", this.root, ...args], {
        timeout: timeoutMs,
        maxBuffer: 16 * 1024 * 1024,
      });
      return stdout;
    } catch (err) {
      throw new RuntimeError("runc_failed", `runc ${args[0]} failed: ${stderrOf(err)}`, { cause: err });
    }
  }

  async state(id: string): Promise<RuncState | undefined> {
    try {
      return JSON.parse(await this.cmd(["state", id])) as RuncState;
    } catch (err) {
      if (/does not exist|not exist/.test((err as Error).message)) return undefined;
      throw err;
    }
  }

  async list(): Promise<RuncState[]> {
    const out = await this.cmd(["list", "--format", "json"]);
    return (JSON.parse(out || "null") as RuncState[] | null) ?? [];
  }

  /** Sends a signal to the container's init (or to every process in it with all). */
  async kill(id: string, signal: string, all = false): Promise<void> {
    await this.cmd(["kill", ...(all ? ["--all"] : []), id, signal]);
  }

  async delete(id: string): Promise<void> {
    try {
      await this.cmd(["delete", "--force", id]);
    } catch (err) {
      if (!/does not exist|not exist/.test((err as Error).message)) throw err;
    }
  }

  /** Starts the supervising wrapper (see MONITOR_SCRIPT); the caller owns and unrefs the child. */
  spawnRun(id: string, f: RunFiles): ChildProcess {
    return spawn(
      "/bin/sh",
      [
        "-c",
        MONITOR_SCRIPT,
        "arca-monitor",
        this.path,
        this.root,
        f.logFile,
        f.bundle,
        f.pidFile,
        id,
        f.exitFile,
      ],
      { detached: true, stdio: ["ignore", f.stdoutFd, f.stderrFd] },
    );
  }

  /**
   * `runc exec` in the foreground with pipes: an exec'd process lives only as long as its caller.
   * With a TTY, runc wants a terminal of its own, or detaches and hands the pty to a console socket;
   * Node can do neither, so arca-console-relay runs runc detached, takes the pty, adopts the process
   * (child subreaper) for its exit status and relays the terminal over plain pipes (fd 3 carries
   * "ROWS COLS" resize lines).
   */
  spawnExec(
    id: string,
    o: {
      args: string[];
      env: string[];
      user: string;
      cwd?: string;
      tty: boolean;
      consoleRelay?: string;
      /** With tty: the container's bundle (its config.json process is the base of the exec'd one). */
      bundle?: string;
      consoleSize?: [number, number];
    },
  ): ExecChild {
    const flags = ["exec", "--user", o.user];
    for (const e of o.env) flags.push("--env", e);
    if (o.cwd) flags.push("--cwd", o.cwd);
    if (!o.tty) {
      return spawn(this.path, ["--root", this.root, ...flags, id, ...o.args], {
        stdio: ["pipe", "pipe", "pipe"],
      });
    }
    if (!o.consoleRelay || !o.bundle) {
      throw new RuntimeError("invalid_spec", "a TTY needs arca-console-relay: run `npm run setup`");
    }
    // Beside runc's state dir, not in it: runc treats its entries as containers.
    const dir = path.join(path.dirname(this.root), "console");
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const base = path.join(dir, randomBytes(8).toString("hex"));
    const [socket, pidFile] = [`${base}.sock`, `${base}.pid`];
    // A process file rather than flags: only there does runc take a console size, applied before the
    // process starts (as dockerd's exec does). It replaces the container's process, so it is built
    // from it the way runc builds one from flags.
    const processFile = `${base}.json`;
    writeFileSync(processFile, JSON.stringify(execProcessSpec(o.bundle, o)), { mode: 0o600 });
    const relayArgs = [
      ...[socket, pidFile, "--", this.path, "--root", this.root, "exec", "--detach"],
      ...["--console-socket", socket, "--pid-file", pidFile, "--process", processFile, id],
    ];
    const child = spawn(o.consoleRelay, relayArgs, { stdio: ["pipe", "pipe", "pipe", "pipe", "pipe"] });
    child.once("close", () => rmSync(processFile, { force: true }));
    return Object.assign(child as ExecChild, {
      resize: resizer(child.stdio[3] as Writable, child.stdio[4] as Readable),
    });
  }
}
