import type { Readable, Writable } from "node:stream";

export type NetworkMode = "none" | "host";
export type RestartPolicyName = "no" | "always" | "unless-stopped" | "on-failure";

export interface RestartPolicy {
  name: RestartPolicyName;
  /** Only for on-failure; 0 or absent means unlimited. */
  maximumRetryCount?: number;
}

export interface MountSpec {
  type: "bind" | "volume";
  /** Absolute host path (bind) or volume name (volume: `<dataRoot>/volumes/<name>/_data`). */
  source: string;
  /** Absolute path inside the container. */
  target: string;
  readonly?: boolean;
}

export interface ContainerSpec {
  name: string;
  /** Image reference resolved through the image store (name, ID or unique ID prefix). */
  image: string;
  /** Overrides the image's Entrypoint (and then drops the image's Cmd, as Docker does). */
  entrypoint?: string[];
  /** Overrides the image's Cmd. */
  cmd?: string[];
  /** `KEY=VALUE` entries; override the image's Env by key. */
  env?: string[];
  workingDir?: string;
  /** `uid[:gid]` or `name[:group]` (looked up in the container's /etc/passwd and /etc/group). */
  user?: string;
  labels?: Record<string, string>;
  networkMode: NetworkMode;
  restartPolicy: RestartPolicy;
  mounts?: MountSpec[];
  privileged?: boolean;
  /** Capability names, with or without the `CAP_` prefix, added to the default set. */
  capAdd?: string[];
  /**
   * A user namespace of its own: container uids and gids 0..size-1 are host ids hostId..hostId+size-1,
   * so its root is no one on the host. The image's layers are unpacked with shifted owners and volumes
   * are chowned to the container's root; needs networkMode "none" (sysfs needs a network namespace the
   * user namespace owns).
   */
  userns?: UsernsMapping;
  /**
   * Docker's default seccomp profile (the default unless privileged), with changes when given, or
   * "unconfined".
   */
  seccomp?: "unconfined" | SeccompChanges;
  /** Namespaced sysctls runc sets before /proc/sys turns read-only, e.g. `net.ipv4.ip_forward: "1"`. */
  sysctls?: Record<string, string>;
  /** The most processes (threads) the container's cgroup may hold; absent: no limit. */
  pidsLimit?: number;
  /** Memory limit of the container's cgroup in bytes; absent: no limit. */
  memory?: number;
}

export interface UsernsMapping {
  hostId: number;
  size: number;
}

export interface SeccompChanges {
  /** Syscalls allowed on top of the default profile. */
  allow?: string[];
  /** Syscalls that fail with ENOSYS (rather than EPERM), so callers take their fallback. */
  enosys?: string[];
}

export type ContainerStatus = "created" | "running" | "restarting" | "exited";

/** What the runtime persists about a container (also what list() returns). */
export interface ContainerRecord {
  /** 64 hex characters. */
  id: string;
  name: string;
  /** Image ID (config digest) the container was created from. */
  imageId: string;
  created: string;
  status: ContainerStatus;
  /** Container init pid on the host while running, else 0. */
  pid: number;
  exitCode: number;
  /** Set when the last start failed (Docker's State.Error). */
  error: string;
  startedAt: string | null;
  finishedAt: string | null;
  restartCount: number;
  /** Stopped through stop(): restart policies leave it alone until it is started again. */
  userStopped: boolean;
  spec: ContainerSpec;
  /** The resolved process (image config merged with the spec). */
  process: ResolvedProcess;
}

export interface ResolvedProcess {
  path: string;
  args: string[];
  entrypoint: string[];
  cmd: string[];
  env: string[];
  workingDir: string;
  user: string;
}

export type RuntimeEventType = "create" | "start" | "die" | "restart" | "destroy";

export interface RuntimeEvent {
  type: RuntimeEventType;
  id: string;
  name: string;
  time: string;
  /** For die. */
  exitCode?: number;
}

export interface StopOptions {
  /** Seconds between SIGTERM and SIGKILL; default 10. */
  timeoutSec?: number;
  signal?: AbortSignal;
}

export interface RemoveOptions {
  /** Kill a running container first instead of refusing. */
  force?: boolean;
  signal?: AbortSignal;
}

export interface LogsOptions {
  /** Keep streaming until the container stops (or the signal aborts). */
  follow?: boolean;
  /** Only entries at or after this time (a Date or Unix seconds, fractional allowed). */
  since?: Date | number;
  /** Only the last n entries (before following); default all. */
  tail?: number;
  /** Prefix each line with its RFC 3339 timestamp and a space, as Docker's API does. */
  timestamps?: boolean;
  signal?: AbortSignal;
}

export interface LogEntry {
  stream: "stdout" | "stderr";
  /** The text as written, including its trailing newline when there was one (json-file's `log`). */
  line: string;
  /** RFC 3339 with nanoseconds. */
  time: string;
}

export interface ExecOptions {
  cmd: string[];
  env?: string[];
  user?: string;
  workingDir?: string;
  /** Allocate a pseudo-terminal (stdout and stderr are then merged into stdout). */
  tty?: boolean;
  /** With tty: the terminal's size [rows, cols] from the start. */
  consoleSize?: [number, number];
  /** Aborting sends SIGTERM, then SIGKILL after 2 s, to the exec'd process. */
  signal?: AbortSignal;
}

export interface ExecProcess {
  stdout: Readable;
  stderr: Readable;
  stdin: Writable;
  /** Resolves with the process exit code (128+n when killed by signal n). */
  exitCode: Promise<number>;
  /** With a TTY: sets the terminal size. */
  resize?: (rows: number, cols: number) => Promise<void>;
}

export interface ListOptions {
  /** Include containers that are not running. */
  all?: boolean;
}

export interface CloseOptions {
  /**
   * Containers whose restart policy is `no` or `on-failure` do not outlive the daemon: close() stops
   * them, waiting this long before SIGKILL (default 10). `always`/`unless-stopped` ones keep running.
   */
  stopTimeoutSec?: number;
}
