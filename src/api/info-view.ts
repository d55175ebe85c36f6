import { existsSync, readdirSync } from "node:fs";
import os from "node:os";
import { formatBytes } from "../buildkit/index.js";
import { isInternalRecord } from "./container-summary.js";
import type { ApiDeps } from "./deps.js";
import { ARCA_VERSION, versionAtLeast } from "./version.js";

/** One DriverStatus line per backend of the pool (state, builds, cache), and what a remote one lacks. */
function backendLines(deps: ApiDeps): [string, string][] {
  const list = deps.pool.list();
  const lines: [string, string][] = [["backends", String(list.length)]];
  for (const b of list) {
    const cache = b.cacheBytes === undefined ? "cache size unknown" : `cache ${formatBytes(b.cacheBytes)}`;
    lines.push([
      `backend ${b.name}`,
      `${b.address} (${b.kind}), ${b.state}, ${b.running} running, ${b.done} done, max ${b.maxBuilds}, ${cache}`,
    ]);
    for (const l of b.lacks) lines.push([`backend ${b.name} lacks`, l]);
  }
  return lines;
}

const cgroupVersion = (): string => (existsSync("/sys/fs/cgroup/cgroup.controllers") ? "2" : "1");

function openFds(): number {
  try {
    return readdirSync("/proc/self/fd").length;
  } catch {
    return 0;
  }
}

/**
 * GET /info with every field dockerd always fills (compared with a stock dockerd's in
 * test/api-probes.test.ts), so clients that read them (compose, testcontainers, `docker info`) find
 * what they expect. Counts leave out Arca's internal containers, as `docker ps` does. Resource-limit
 * flags are false: Arca runs no user containers to apply them to.
 */
export function daemonInfo(deps: ApiDeps, apiVersion: string): Record<string, unknown> {
  const containers = deps.runtime.list({ all: true }).filter((c) => !isInternalRecord(c));
  const running = containers.filter((c) => c.status === "running" || c.status === "restarting").length;
  const registryConfig: Record<string, unknown> = {
    InsecureRegistryCIDRs: ["127.0.0.0/8"],
    IndexConfigs: { "docker.io": { Name: "docker.io", Mirrors: [], Secure: true, Official: true } },
    Mirrors: [],
  };
  // Dropped from dockerd's answer in API 1.49.
  if (!versionAtLeast(apiVersion, "1.49")) {
    registryConfig.AllowNondistributableArtifactsCIDRs = [];
    registryConfig.AllowNondistributableArtifactsHostnames = [];
  }
  const info: Record<string, unknown> = {
    ID: deps.daemonName,
    Containers: containers.length,
    ContainersRunning: running,
    ContainersPaused: 0,
    ContainersStopped: containers.length - running,
    Images: deps.store.list().length,
    Driver: "overlayfs",
    // What dockerd reports with the containerd image store: buildx then enables OCI/docker
    // exports, cache export and multi-platform (Arca's store is an OCI store too).
    DriverStatus: [
      ["driver-type", "io.containerd.snapshotter.v1"],
      ["buildkit", deps.buildkitVersion],
      ["sandbox", deps.buildkit.status.ready ? "ready" : "starting"],
      ["sandbox kind", sandboxKind(deps.buildkit.kind, deps.buildkit.status.accel)],
      ...backendLines(deps),
    ],
    Plugins: {
      Volume: ["local"],
      Network: ["bridge", "host", "null"],
      Authorization: null,
      Log: ["json-file"],
    },
    MemoryLimit: false,
    SwapLimit: false,
    KernelMemory: false,
    KernelMemoryTCP: false,
    CpuCfsPeriod: false,
    CpuCfsQuota: false,
    CPUShares: false,
    CPUSet: false,
    PidsLimit: false,
    IPv4Forwarding: false,
    BridgeNfIptables: false,
    BridgeNfIp6tables: false,
    Debug: false,
    NFd: openFds(),
    OomKillDisable: false,
    // A Node process has no goroutines; dockerd's field is kept for clients that read it.
    NGoroutines: 0,
    SystemTime: new Date().toISOString(),
    LoggingDriver: "json-file",
    CgroupDriver: "cgroupfs",
    CgroupVersion: cgroupVersion(),
    NEventsListener: deps.events.listeners,
    KernelVersion: os.release(),
    OperatingSystem: "Arca",
    OSVersion: "",
    OSType: "linux",
    Architecture: os.arch() === "x64" ? "x86_64" : os.arch() === "arm64" ? "aarch64" : os.arch(),
    IndexServerAddress: "https://index.docker.io/v1/",
    RegistryConfig: registryConfig,
    NCPU: os.cpus().length,
    MemTotal: os.totalmem(),
    GenericResources: null,
    DockerRootDir: deps.dataRoot,
    HttpProxy: "",
    HttpsProxy: "",
    NoProxy: "",
    Name: os.hostname(),
    Labels: [],
    ExperimentalBuild: false,
    ServerVersion: ARCA_VERSION,
    Runtimes: { runc: { path: "runc" } },
    DefaultRuntime: "runc",
    Swarm: {
      NodeID: "",
      NodeAddr: "",
      LocalNodeState: "inactive",
      ControlAvailable: false,
      Error: "",
      RemoteManagers: null,
    },
    LiveRestoreEnabled: false,
    Isolation: "",
    InitBinary: "",
    ContainerdCommit: { ID: "", Expected: "" },
    RuncCommit: { ID: "", Expected: "" },
    InitCommit: { ID: "", Expected: "" },
    SecurityOptions: [],
    Warnings: null,
  };
  if (versionAtLeast(apiVersion, "1.46")) {
    info.CDISpecDirs = [];
    info.Containerd = null;
  }
  return info;
}

/** "runc", or "vm (QEMU, kvm|tcg)": what isolates builds, as `docker info` shows it. */
function sandboxKind(kind: string, accel: string | undefined): string {
  return kind === "vm" ? `vm (QEMU, ${accel ?? "starting"})` : kind;
}
