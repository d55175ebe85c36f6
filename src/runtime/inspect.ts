import type { RuntimePaths } from "./paths.js";
import type { ContainerRecord } from "./types.js";

const ZERO_TIME = "0001-01-01T00:00:00Z";

/** The subset of Docker's ContainerInspect that Arca fills in. */
export interface ContainerInspect {
  Id: string;
  Name: string;
  Created: string;
  Path: string;
  Args: string[];
  State: {
    Status: "created" | "running" | "restarting" | "exited";
    Running: boolean;
    Paused: boolean;
    Restarting: boolean;
    OOMKilled: boolean;
    Dead: boolean;
    Pid: number;
    ExitCode: number;
    Error: string;
    StartedAt: string;
    FinishedAt: string;
  };
  Image: string;
  ResolvConfPath: string;
  HostnamePath: string;
  HostsPath: string;
  LogPath: string;
  RestartCount: number;
  Driver: string;
  Platform: string;
  Config: {
    Hostname: string;
    User: string;
    Tty: boolean;
    Env: string[];
    Cmd: string[] | null;
    Entrypoint: string[] | null;
    Image: string;
    WorkingDir: string;
    Labels: Record<string, string>;
  };
  HostConfig: {
    Binds: string[];
    NetworkMode: string;
    RestartPolicy: { Name: string; MaximumRetryCount: number };
    Privileged: boolean;
    CapAdd: string[] | null;
    /** Docker's: null for the default seccomp profile; here also how the default was changed. */
    SecurityOpt: string[] | null;
    Sysctls: Record<string, string> | null;
    /** Bytes; 0: no limit. */
    Memory: number;
    PidsLimit: number | null;
    LogConfig: { Type: string; Config: Record<string, string> };
  };
  Mounts: {
    Type: "bind" | "volume";
    Name?: string;
    Source: string;
    Destination: string;
    Driver?: string;
    Mode: string;
    RW: boolean;
    Propagation: string;
  }[];
}

export function toInspect(c: ContainerRecord, paths: RuntimePaths): ContainerInspect {
  const mounts = c.spec.mounts ?? [];
  return {
    Id: c.id,
    Name: `/${c.name}`,
    Created: c.created,
    Path: c.process.path,
    Args: c.process.args,
    State: {
      Status: c.status,
      Running: c.status === "running",
      Paused: false,
      Restarting: c.status === "restarting",
      OOMKilled: false,
      Dead: false,
      Pid: c.pid,
      ExitCode: c.exitCode,
      Error: c.error,
      StartedAt: c.startedAt ?? ZERO_TIME,
      FinishedAt: c.finishedAt ?? ZERO_TIME,
    },
    Image: c.imageId,
    ResolvConfPath: paths.file(c.id, "resolv.conf"),
    HostnamePath: paths.file(c.id, "hostname"),
    HostsPath: paths.file(c.id, "hosts"),
    LogPath: paths.file(c.id, "json-log"),
    RestartCount: c.restartCount,
    Driver: "overlay",
    Platform: "linux",
    Config: {
      Hostname: c.id.slice(0, 12),
      User: c.process.user,
      Tty: false,
      Env: c.process.env,
      Cmd: c.process.cmd.length ? c.process.cmd : null,
      Entrypoint: c.process.entrypoint.length ? c.process.entrypoint : null,
      Image: c.spec.image,
      WorkingDir: c.process.workingDir,
      Labels: c.spec.labels ?? {},
    },
    HostConfig: {
      Binds: mounts.map((m) => `${m.source}:${m.target}${m.readonly ? ":ro" : ""}`),
      NetworkMode: c.spec.networkMode,
      RestartPolicy: {
        Name: c.spec.restartPolicy.name,
        MaximumRetryCount: c.spec.restartPolicy.maximumRetryCount ?? 0,
      },
      Privileged: c.spec.privileged ?? false,
      CapAdd: c.spec.capAdd?.length ? c.spec.capAdd : null,
      SecurityOpt: securityOpt(c),
      Sysctls: c.spec.sysctls && Object.keys(c.spec.sysctls).length ? c.spec.sysctls : null,
      Memory: c.spec.memory ?? 0,
      PidsLimit: c.spec.pidsLimit ?? null,
      LogConfig: { Type: "json-file", Config: {} },
    },
    Mounts: mounts.map((m) => ({
      Type: m.type,
      ...(m.type === "volume" ? { Name: m.source, Driver: "local" } : {}),
      Source: m.type === "volume" ? paths.volumeData(m.source) : m.source,
      Destination: m.target,
      Mode: m.readonly ? "ro" : "",
      RW: !m.readonly,
      Propagation: m.type === "bind" ? "rprivate" : "",
    })),
  };
}

function securityOpt(c: ContainerRecord): string[] | null {
  const sc = c.spec.seccomp;
  if (c.spec.privileged) return ["label=disable"];
  if (sc === "unconfined") return ["seccomp=unconfined"];
  if (!sc || (!sc.allow?.length && !sc.enosys?.length)) return null;
  const parts = [
    ...(sc.allow?.length ? [`allow=${sc.allow.join(",")}`] : []),
    ...(sc.enosys?.length ? [`enosys=${sc.enosys.join(",")}`] : []),
  ];
  return [`seccomp=default;${parts.join(";")}`];
}
