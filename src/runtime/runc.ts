import { type ChildProcess, type ChildProcessWithoutNullStreams, execFile, spawn } from "node:child_process";
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

  /** `runc exec` in the foreground with pipes: an exec'd process lives only as long as its caller. */
  spawnExec(
    id: string,
    o: { args: string[]; env: string[]; user: string; cwd?: string; tty: boolean },
  ): ChildProcessWithoutNullStreams {
    const flags = ["exec", "--user", o.user];
    for (const e of o.env) flags.push("--env", e);
    if (o.cwd) flags.push("--cwd", o.cwd);
    if (o.tty) flags.push("--tty");
    return spawn(this.path, ["--root", this.root, ...flags, id, ...o.args], {
      stdio: ["pipe", "pipe", "pipe"],
    });
  }
}
