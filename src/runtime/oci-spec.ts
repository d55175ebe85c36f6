import { containerCaps } from "./capabilities.js";
import { seccompProfile } from "./seccomp.js";
import type { NetworkMode, SeccompChanges, UsernsMapping } from "./types.js";

export interface OciMount {
  destination: string;
  type: string;
  source: string;
  options?: string[];
}

export interface OciSpecInput {
  hostname: string;
  args: string[];
  env: string[];
  cwd: string;
  uid: number;
  gid: number;
  additionalGids: number[];
  networkMode: NetworkMode;
  privileged: boolean;
  capAdd?: string[];
  /** The rootfs (overlay mount point): relative to the bundle, or absolute. */
  rootPath?: string;
  userns?: UsernsMapping;
  /** Docker's default profile (with changes) unless "unconfined" or privileged. */
  seccomp?: "unconfined" | SeccompChanges;
  sysctls?: Record<string, string>;
  pidsLimit?: number;
  memory?: number;
  /** Bind mounts and volumes, plus the generated /etc/hostname, /etc/hosts, /etc/resolv.conf. */
  extraMounts: OciMount[];
  cgroupsPath: string;
}

/** runc's defaults plus the two Docker (25+) adds: interrupt counts and RAPL energy counters leak host activity. */
const MASKED_PATHS = [
  "/proc/asound",
  "/proc/acpi",
  "/proc/interrupts",
  "/proc/kcore",
  "/proc/keys",
  "/proc/latency_stats",
  "/proc/timer_list",
  "/proc/timer_stats",
  "/proc/sched_debug",
  "/proc/scsi",
  "/sys/firmware",
  "/sys/devices/virtual/powercap",
];
const READONLY_PATHS = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"];

/**
 * The OCI runtime config for runc, written here rather than from `runc spec` (whose defaults include
 * terminal:true, which breaks detached runs). Docker's defaults: its capabilities, the seccomp
 * profile the caller resolved (see seccomp.ts), masked and read-only /proc paths, read-only /sys and
 * cgroups, only runc's default devices. Privileged: every capability this host can grant, all
 * devices, rw /sys and cgroups, no masked or read-only paths. With `userns` the container gets a user
 * namespace of its own, so its capabilities count only there.
 */
export function ociSpec(i: OciSpecInput): Record<string, unknown> {
  const caps = containerCaps(i.privileged, i.capAdd);
  // As moby: the profile follows the capabilities granted (e.g. CAP_SYS_ADMIN allows mount, unshare).
  const seccomp = i.privileged || i.seccomp === "unconfined" ? undefined : seccompProfile(caps, i.seccomp);
  const ro = i.privileged ? [] : ["ro"];
  const namespaces: { type: string }[] = [
    { type: "pid" },
    { type: "ipc" },
    { type: "uts" },
    { type: "mount" },
  ];
  // A fresh network namespace has only `lo`, which runc brings up: that is networkMode "none".
  if (i.networkMode === "none") namespaces.push({ type: "network" });
  if (i.userns) namespaces.push({ type: "user" });
  const idMap = i.userns ? [{ containerID: 0, hostID: i.userns.hostId, size: i.userns.size }] : undefined;
  const resources: Record<string, unknown> = { devices: [{ allow: i.privileged, access: "rwm" }] };
  if (i.pidsLimit !== undefined) resources.pids = { limit: i.pidsLimit };
  if (i.memory !== undefined) resources.memory = { limit: i.memory };
  const mounts: OciMount[] = [
    { destination: "/proc", type: "proc", source: "proc", options: ["nosuid", "noexec", "nodev"] },
    {
      destination: "/dev",
      type: "tmpfs",
      source: "tmpfs",
      options: ["nosuid", "strictatime", "mode=755", "size=65536k"],
    },
    {
      destination: "/dev/pts",
      type: "devpts",
      source: "devpts",
      options: ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"],
    },
    {
      destination: "/dev/shm",
      type: "tmpfs",
      source: "shm",
      options: ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
    },
    { destination: "/dev/mqueue", type: "mqueue", source: "mqueue", options: ["nosuid", "noexec", "nodev"] },
    { destination: "/sys", type: "sysfs", source: "sysfs", options: ["nosuid", "noexec", "nodev", ...ro] },
    {
      destination: "/sys/fs/cgroup",
      type: "cgroup",
      source: "cgroup",
      options: ["nosuid", "noexec", "nodev", "relatime", ...ro],
    },
    ...i.extraMounts,
  ];
  return {
    ociVersion: "1.0.2",
    process: {
      terminal: false,
      user: { uid: i.uid, gid: i.gid, additionalGids: i.additionalGids },
      args: i.args,
      env: i.env,
      cwd: i.cwd,
      capabilities: { bounding: caps, effective: caps, permitted: caps },
      // No rlimits: raising RLIMIT_NOFILE needs CAP_SYS_RESOURCE, which these hosts withhold; inherit.
      noNewPrivileges: false,
    },
    root: { path: i.rootPath ?? "rootfs", readonly: false },
    hostname: i.hostname,
    mounts,
    linux: {
      namespaces,
      cgroupsPath: i.cgroupsPath,
      resources,
      ...(idMap ? { uidMappings: idMap, gidMappings: idMap } : {}),
      ...(i.sysctls && Object.keys(i.sysctls).length ? { sysctl: i.sysctls } : {}),
      ...(seccomp ? { seccomp } : {}),
      ...(i.privileged ? {} : { maskedPaths: MASKED_PATHS, readonlyPaths: READONLY_PATHS }),
    },
  };
}
