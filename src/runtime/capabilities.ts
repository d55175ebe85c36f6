import { readFileSync } from "node:fs";
import { RuntimeError } from "./errors.js";

/** Linux capability names by bit number (linux/capability.h). */
const CAP_NAMES = [
  "CAP_CHOWN",
  "CAP_DAC_OVERRIDE",
  "CAP_DAC_READ_SEARCH",
  "CAP_FOWNER",
  "CAP_FSETID",
  "CAP_KILL",
  "CAP_SETGID",
  "CAP_SETUID",
  "CAP_SETPCAP",
  "CAP_LINUX_IMMUTABLE",
  "CAP_NET_BIND_SERVICE",
  "CAP_NET_BROADCAST",
  "CAP_NET_ADMIN",
  "CAP_NET_RAW",
  "CAP_IPC_LOCK",
  "CAP_IPC_OWNER",
  "CAP_SYS_MODULE",
  "CAP_SYS_RAWIO",
  "CAP_SYS_CHROOT",
  "CAP_SYS_PTRACE",
  "CAP_SYS_PACCT",
  "CAP_SYS_ADMIN",
  "CAP_SYS_BOOT",
  "CAP_SYS_NICE",
  "CAP_SYS_RESOURCE",
  "CAP_SYS_TIME",
  "CAP_SYS_TTY_CONFIG",
  "CAP_MKNOD",
  "CAP_LEASE",
  "CAP_AUDIT_WRITE",
  "CAP_AUDIT_CONTROL",
  "CAP_SETFCAP",
  "CAP_MAC_OVERRIDE",
  "CAP_MAC_ADMIN",
  "CAP_SYSLOG",
  "CAP_WAKE_ALARM",
  "CAP_BLOCK_SUSPEND",
  "CAP_AUDIT_READ",
  "CAP_PERFMON",
  "CAP_BPF",
  "CAP_CHECKPOINT_RESTORE",
] as const;

/** Docker's default set for unprivileged containers. */
export const DEFAULT_CAPS = [
  "CAP_CHOWN",
  "CAP_DAC_OVERRIDE",
  "CAP_FSETID",
  "CAP_FOWNER",
  "CAP_MKNOD",
  "CAP_NET_RAW",
  "CAP_SETGID",
  "CAP_SETUID",
  "CAP_SETFCAP",
  "CAP_SETPCAP",
  "CAP_NET_BIND_SERVICE",
  "CAP_SYS_CHROOT",
  "CAP_KILL",
  "CAP_AUDIT_WRITE",
];

let grantable: Set<string> | undefined;

/**
 * Capabilities runc can actually grant: those in this process's bounding set. Asking for more fails the
 * whole start ("unable to apply caps"; e.g. CAP_SYS_RESOURCE is withheld on these VMs).
 */
export function grantableCaps(): Set<string> {
  if (grantable) return grantable;
  const status = readFileSync("/proc/self/status", "utf8");
  const hex = /^CapBnd:\s*([0-9a-f]+)$/m.exec(status)?.[1] ?? "0";
  const mask = BigInt(`0x${hex}`);
  grantable = new Set(CAP_NAMES.filter((_, bit) => (mask >> BigInt(bit)) & 1n));
  return grantable;
}

export function normalizeCap(name: string): string {
  const upper = name.toUpperCase();
  const full = upper.startsWith("CAP_") ? upper : `CAP_${upper}`;
  if (full === "CAP_ALL") return full;
  if (!(CAP_NAMES as readonly string[]).includes(full))
    throw new RuntimeError("invalid_spec", `unknown capability ${JSON.stringify(name)}`);
  return full;
}

/** The capability list for a container: everything grantable when privileged, else defaults + additions. */
export function containerCaps(privileged: boolean, capAdd: string[] = []): string[] {
  const ok = grantableCaps();
  if (privileged) return [...ok];
  const wanted = new Set(DEFAULT_CAPS);
  for (const c of capAdd.map(normalizeCap)) {
    if (c === "CAP_ALL") return [...ok];
    wanted.add(c);
  }
  return [...wanted].filter((c) => ok.has(c));
}
