/**
 * What a process sees of its privileges. core_pattern and /sys are opened for writing without
 * writing anything (busybox `[ -w ]` is always true for root).
 */
export const PRIVILEGE_PROBE = [
  "grep -E '^(CapEff|Seccomp):' /proc/self/status | tr -d '\\t' | tr ':' '='",
  "echo uid_map=$(cat /proc/self/uid_map)",
  // Who owns the rootfs as the process sees it (65534: unmapped, i.e. not shifted into the namespace).
  "echo root_owner=$(stat -c %u:%g / /bin/sh | sort -u | tr '\\n' ' ')",
  "if (: >> /proc/sys/kernel/core_pattern) 2>/dev/null; then echo core_pattern=writable; else echo core_pattern=denied; fi",
  // ro, rw, or absent (BuildKit gives RUN steps in a user namespace no /sys at all).
  'echo sys=$(awk \'$2 == "/sys" { split($4, o, ","); m = o[1] } END { print (m ? m : "absent") }\' /proc/self/mounts)',
  "echo cgroup=$(awk '$2 ~ /^\\/sys\\/fs\\/cgroup\\// { split($4, o, \",\"); print o[1] }' /proc/self/mounts | sort -u | tr '\\n' ' ')",
].join("\n");

export function parseProbe(out: string): Record<string, string> {
  const r: Record<string, string> = {};
  for (const line of out.split("\n")) {
    const i = line.indexOf("=");
    if (i > 0) r[line.slice(0, i)] = line.slice(i + 1).trim();
  }
  return r;
}

/** Docker's default 14 capabilities + CAP_SYS_ADMIN (bit 21) + CAP_NET_ADMIN (bit 12). */
export const SANDBOX_CAP_EFF = "00000000a82435fb";
