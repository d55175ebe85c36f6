import { createHash } from "node:crypto";
import { open, stat } from "node:fs/promises";
import { setTimeout as sleep } from "node:timers/promises";
import type {
  ContainerInspect,
  ExecOptions,
  ExecProcess,
  LogEntry,
  LogsOptions,
} from "../../runtime/index.js";

/** What `docker inspect/logs/exec arca-buildkit` reach of a sandbox that is not a runc container. */
export interface SandboxContainer {
  inspect(): ContainerInspect;
  logs(opts?: LogsOptions): AsyncIterable<LogEntry>;
  exec(opts: ExecOptions): Promise<ExecProcess>;
}

export interface VmViewState {
  name: string;
  channelDir: string;
  imageId: string;
  pid: number | undefined;
  startedAt: Date | undefined;
  createdAt: Date;
  restarts: number;
  consoleLog: string;
  cacheDisk: string;
  memoryBytes: number;
}

/** The VM as Docker's ContainerInspect: what runs it (QEMU's pid), its image, disk and console log. */
export function vmInspect(s: VmViewState): ContainerInspect {
  const running = s.pid !== undefined;
  return {
    Id: createHash("sha256").update(`arca-vm:${s.channelDir}`).digest("hex"),
    Name: `/${s.name}`,
    Created: s.createdAt.toISOString(),
    Path: "/sbin/arca-vm-init",
    Args: [],
    State: {
      Status: running ? "running" : "exited",
      Running: running,
      Paused: false,
      Restarting: false,
      OOMKilled: false,
      Dead: false,
      Pid: s.pid ?? 0,
      ExitCode: 0,
      Error: "",
      StartedAt: s.startedAt?.toISOString() ?? "0001-01-01T00:00:00Z",
      FinishedAt: "0001-01-01T00:00:00Z",
    },
    Image: s.imageId,
    ResolvConfPath: "",
    HostnamePath: "",
    HostsPath: "",
    LogPath: s.consoleLog,
    RestartCount: s.restarts,
    Driver: "qemu",
    Platform: "linux",
    Config: {
      Hostname: "",
      User: "",
      Tty: false,
      Env: [],
      Cmd: null,
      Entrypoint: ["/sbin/arca-vm-init"],
      Image: s.imageId,
      WorkingDir: "",
      Labels: { "com.arca.internal": "true", "com.arca.role": "buildkit", "com.arca.sandbox": "vm" },
    },
    HostConfig: {
      Binds: [],
      NetworkMode: "none",
      RestartPolicy: { Name: "always", MaximumRetryCount: 0 },
      Privileged: false,
      CapAdd: null,
      SecurityOpt: null,
      Sysctls: null,
      Memory: s.memoryBytes,
      PidsLimit: null,
      LogConfig: { Type: "serial-console", Config: {} },
    },
    Mounts: [
      {
        Type: "bind",
        Source: s.cacheDisk,
        Destination: "/var/lib/buildkit",
        Mode: "",
        RW: true,
        Propagation: "",
      },
    ],
  };
}

const FOLLOW_POLL_MS = 250;

/**
 * The serial console as log entries (stdout): its lines carry no times, so
 * each gets the time it was read (lines already there: the file's mtime).
 * `tail` and `since` apply to those times; `follow` polls the file while
 * `running()` says the VM is up.
 */
export async function* consoleLogEntries(
  file: string,
  opts: LogsOptions,
  running: () => boolean,
): AsyncIterable<LogEntry> {
  const sinceMs =
    opts.since === undefined ? 0 : opts.since instanceof Date ? opts.since.getTime() : opts.since * 1000;
  const fh = await open(file, "r").catch(() => undefined);
  if (!fh) return;
  try {
    let offset = 0;
    let rest = "";
    const readNew = async (): Promise<string[]> => {
      const { size } = await fh.stat();
      if (size < offset) offset = 0; // a new VM start truncated it
      if (size === offset) return [];
      const buf = Buffer.alloc(size - offset);
      const { bytesRead } = await fh.read(buf, 0, buf.length, offset);
      offset += bytesRead;
      const text = rest + buf.toString("utf8", 0, bytesRead);
      const lines = text.split(/(?<=\n)/);
      rest = lines.at(-1)?.endsWith("\n") ? "" : (lines.pop() ?? "");
      return lines;
    };
    const mtime = (await stat(file)).mtime;
    let first = await readNew();
    if (opts.tail !== undefined) first = opts.tail === 0 ? [] : first.slice(-opts.tail);
    if (mtime.getTime() >= sinceMs) {
      for (const line of first) yield { stream: "stdout", line, time: mtime.toISOString() };
    }
    while (opts.follow && running() && !opts.signal?.aborted) {
      await sleep(FOLLOW_POLL_MS, undefined, { signal: opts.signal }).catch(() => undefined);
      const now = new Date();
      for (const line of await readNew()) {
        if (now.getTime() >= sinceMs) yield { stream: "stdout", line, time: now.toISOString() };
      }
    }
  } finally {
    await fh.close();
  }
}
