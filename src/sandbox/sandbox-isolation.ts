import { createHash } from "node:crypto";
import { chmod, chown, lchown, lstat, mkdir, readdir, readFile } from "node:fs/promises";
import { totalmem } from "node:os";
import path from "node:path";
import type { ContainerSpec, UsernsMapping } from "../runtime/index.js";

/**
 * The sandbox's user namespace: its uids/gids 0..65535 are host ids 100000..165535, so root inside
 * (buildkitd, and every RUN step) is no one on the host, and its capabilities count only for what
 * that namespace owns (its mounts, its network namespace), never for the host's.
 */
export const SANDBOX_USERNS: UsernsMapping = { hostId: 100_000, size: 65_536 };

/** Enough for parallel builds with many processes; a fork bomb in a step stops here. */
export const DEFAULT_SANDBOX_PIDS_LIMIT = 32_768;

/** Three quarters of the host's memory: a runaway build is OOM-killed inside, the host keeps the rest. */
export function defaultSandboxMemory(): number {
  return Math.floor((totalmem() * 3) / 4);
}

export interface SandboxLimits {
  /** Most processes/threads in the sandbox (buildkitd and all steps); 0: no limit. Default 32768. */
  pidsLimit?: number;
  /** Memory limit in bytes; 0: no limit. Default: 3/4 of the host's memory. */
  memory?: number;
}

/**
 * The least a sandbox needs to run rootful buildkitd with its OCI worker (runc per step, overlayfs
 * snapshotter) — measured, see ENVIRONMENT.md — instead of `privileged`.
 */
export function sandboxIsolation(limits: SandboxLimits = {}): Partial<ContainerSpec> {
  const pids = limits.pidsLimit ?? DEFAULT_SANDBOX_PIDS_LIMIT;
  const memory = limits.memory ?? defaultSandboxMemory();
  return {
    privileged: false,
    userns: SANDBOX_USERNS,
    // On top of Docker's default 14 (CHOWN, DAC_OVERRIDE, FOWNER, FSETID, KILL, SETGID, SETUID,
    // SETPCAP, SETFCAP, MKNOD, NET_RAW, NET_BIND_SERVICE, SYS_CHROOT, AUDIT_WRITE): buildkitd hands
    // them to RUN steps, which expect what `docker run` gives (chown, setuid in package scripts, ping).
    capAdd: [
      // The snapshotter's overlay mounts, and each step's runc: mount, pivot_root, unshare/setns for
      // its namespaces. In the user namespace this reaches only mounts and namespaces the sandbox owns;
      // /proc/sys, /sys and cgroups stay read-only (they belong to the host's namespaces).
      "CAP_SYS_ADMIN",
      // The step network: CNI bridge and veth pairs, addresses, routes and nft rules, all in the
      // sandbox's own network namespace (the only one its user namespace owns).
      "CAP_NET_ADMIN",
    ],
    // Docker's default profile for these capabilities (so mount, unshare, setns, clone with namespace
    // flags), plus what runc inside needs: pivot_root into each step's rootfs, and the session keyring
    // calls answering ENOSYS so runc skips the keyring instead of failing ("unable to join session
    // keyring" under EPERM).
    seccomp: { allow: ["pivot_root"], enosys: ["keyctl", "add_key", "request_key"] },
    // The CNI bridge plugin turns forwarding on; /proc/sys is read-only inside, so runc sets it.
    sysctls: { "net.ipv4.ip_forward": "1" },
    ...(pids > 0 ? { pidsLimit: pids } : {}),
    ...(memory > 0 ? { memory } : {}),
  };
}

/**
 * A version of the sandbox's spec (a digest of it): a container whose label differs was created by
 * an older Arca or with other limits (e.g. privileged) and is recreated, not adopted.
 */
export function specVersion(spec: ContainerSpec): string {
  return createHash("sha256").update(JSON.stringify(spec)).digest("hex").slice(0, 16);
}

/**
 * The channel directory is root's, shared with the sandbox's root through
 * its group (mode 0770): the proxy inside creates its sockets there and
 * reaches the daemon's (root's, group-accessible), the daemon's own socket
 * checks accept a root-owned directory, and other host users cannot enter.
 */
export async function shareChannel(dir: string, ids: UsernsMapping = SANDBOX_USERNS): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o770 });
  await chown(dir, 0, ids.hostId);
  await chmod(dir, 0o770);
  for (const name of await readdir(dir)) {
    const p = path.join(dir, name);
    const st = await lstat(p);
    // What the daemon put there (uid 0) becomes group-accessible; the sandbox's own files stay its own.
    if (st.uid < ids.hostId || st.uid >= ids.hostId + ids.size) {
      await chownTree(p, { hostId: 0, size: 0 }, ids.hostId);
      if (st.isSocket()) await chmod(p, (st.mode & 0o777) | 0o060);
    }
  }
}

async function chownTree(p: string, ids: UsernsMapping, gid = ids.hostId): Promise<void> {
  const st = await lstat(p);
  await lchown(p, ids.hostId, gid);
  if (st.isDirectory()) for (const n of await readdir(p)) await chownTree(path.join(p, n), ids, gid);
}

/**
 * Host users whose subordinate ids (/etc/subuid, /etc/subgid: what rootless containers map to) overlap
 * the sandbox's: their containers' processes would share its host ids. Returns a warning per overlap.
 */
export async function subidOverlaps(
  ids: UsernsMapping = SANDBOX_USERNS,
  files = ["/etc/subuid", "/etc/subgid"],
): Promise<string[]> {
  const warnings: string[] = [];
  for (const file of files) {
    const text = await readFile(file, "utf8").catch(() => "");
    for (const line of text.split("\n")) {
      const [user, start, count] = line.trim().split(":");
      const [a, n] = [Number(start), Number(count)];
      if (!user || !Number.isInteger(a) || !Number.isInteger(n)) continue;
      if (a < ids.hostId + ids.size && ids.hostId < a + n)
        warnings.push(
          `${file} gives ${user} ids ${a}-${a + n - 1}, which overlap the sandbox's user namespace (${ids.hostId}-${ids.hostId + ids.size - 1}): that user's rootless containers would share its host ids`,
        );
    }
  }
  return warnings;
}
