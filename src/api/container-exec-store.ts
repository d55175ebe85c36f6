import { randomBytes } from "node:crypto";
import { ApiError } from "./errors.js";

export interface ExecConfig {
  cmd: string[];
  env: string[];
  user: string;
  workingDir: string;
  tty: boolean;
  attachStdin: boolean;
  attachStdout: boolean;
  attachStderr: boolean;
  privileged: boolean;
  detachKeys: string;
  /** Initial terminal size [rows, cols] (ConsoleSize), with a TTY. */
  consoleSize?: [number, number];
}

export interface ExecRecord {
  id: string;
  containerId: string;
  config: ExecConfig;
  started: boolean;
  running: boolean;
  /** null until the process has exited (dockerd's `*int`). */
  exitCode: number | null;
  pid: number;
  /** Set while a TTY process runs. */
  resize?: (rows: number, cols: number) => Promise<void>;
}

/** How long a finished exec stays inspectable (the docker CLI reads its exit code right after the stream ends). */
const KEEP_FINISHED_MS = 10 * 60_000;

/** Exec instances live in the daemon's memory only, as dockerd's exec store. */
export class ExecStore {
  readonly #execs = new Map<string, ExecRecord>();

  create(containerId: string, config: ExecConfig): ExecRecord {
    const rec: ExecRecord = {
      id: randomBytes(32).toString("hex"),
      containerId,
      config,
      started: false,
      running: false,
      exitCode: null,
      pid: 0,
    };
    this.#execs.set(rec.id, rec);
    return rec;
  }

  get(id: string): ExecRecord {
    const rec = this.#execs.get(id);
    if (!rec) throw new ApiError("not_found", `No such exec instance: ${id}`);
    return rec;
  }

  /** Marks the exec started; a second start is a conflict, as in dockerd. */
  claim(id: string): ExecRecord {
    const rec = this.get(id);
    if (rec.running) throw new ApiError("conflict", `Error: Exec command ${id} is already running`);
    if (rec.started) throw new ApiError("conflict", `Error: Exec command ${id} has already run`);
    rec.started = true;
    rec.running = true;
    return rec;
  }

  finish(rec: ExecRecord, exitCode: number): void {
    rec.running = false;
    rec.exitCode = exitCode;
    setTimeout(() => this.#execs.delete(rec.id), KEEP_FINISHED_MS).unref();
  }

  /** Exec IDs of a container (its inspect's ExecIDs: the ones still running or not yet started). */
  idsFor(containerId: string): string[] {
    return [...this.#execs.values()]
      .filter((e) => e.containerId === containerId && (e.running || !e.started))
      .map((e) => e.id);
  }
}

/** `GET /exec/{id}/json`, dockerd's ExecInspect shape. */
export function execInspect(rec: ExecRecord): Record<string, unknown> {
  const [entrypoint = "", ...args] = rec.config.cmd;
  return {
    ID: rec.id,
    Running: rec.running,
    ExitCode: rec.exitCode,
    ProcessConfig: {
      tty: rec.config.tty,
      entrypoint,
      arguments: args,
      privileged: rec.config.privileged,
      user: rec.config.user,
    },
    OpenStdin: rec.config.attachStdin,
    OpenStderr: rec.config.attachStderr,
    OpenStdout: rec.config.attachStdout,
    CanRemove: false,
    ContainerID: rec.containerId,
    DetachKeys: rec.config.detachKeys,
    Pid: rec.pid,
  };
}
