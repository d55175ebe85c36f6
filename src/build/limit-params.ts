import { BuildError } from "./errors.js";

const INT64_MAX = 2n ** 63n - 1n;
const INT64_MIN = -(2n ** 63n);

/**
 * An int64 query parameter as Go's strconv.ParseInt(s, 10, 64) reads it, with its error wording; a value
 * past 2^53 (no JSON number holds it exactly) is out of range here too. Empty or absent: undefined.
 */
export function int64Param(q: URLSearchParams, name: string): number | undefined {
  const s = q.get(name) ?? "";
  if (s === "") return undefined;
  const fail = (why: string) =>
    new BuildError(
      "invalid_parameter",
      `invalid ${name} ${JSON.stringify(s)}: strconv.ParseInt: parsing ${JSON.stringify(s)}: ${why}`,
    );
  if (!/^[+-]?\d+$/.test(s)) throw fail("invalid syntax");
  const big = BigInt(s);
  if (big > INT64_MAX || big < INT64_MIN) throw fail("value out of range");
  const n = Number(big);
  if (!Number.isSafeInteger(n)) throw fail("value out of range");
  return n;
}

/** shmsize: bytes of /dev/shm for RUN steps (BuildKit's shm-size); 0 means the default. */
export function shmSizeParam(q: URLSearchParams): number {
  const n = int64Param(q, "shmsize") ?? 0;
  if (n < 0) throw new BuildError("invalid_parameter", "SHM size can not be less than 0");
  return n;
}

/**
 * The classic builder's per-container limits (`docker build --memory/--cpu-shares/...`). BuildKit's
 * Dockerfile frontend has no way to give one RUN step a memory or CPU limit (its attributes stop at
 * shm-size, ulimit and cgroup-parent, which names a cgroup of the sandbox's, not the host's), so a limit
 * is refused rather than silently ignored: the steps share the sandbox's limits. Unset values (0, "",
 * and memswap -1 for "unlimited swap") are what clients send by default and pass.
 */
export function checkResourceLimits(q: URLSearchParams): void {
  const set: string[] = [];
  for (const name of ["memory", "cpushares", "cpuperiod", "cpuquota"]) {
    const n = int64Param(q, name);
    if (n === undefined || n === 0) continue;
    if (n < 0) throw new BuildError("invalid_parameter", `invalid ${name} ${n}: must not be negative`);
    set.push(`${name}=${n}`);
  }
  const swap = int64Param(q, "memswap");
  if (swap !== undefined && swap !== 0 && swap !== -1) {
    if (swap < -1) throw new BuildError("invalid_parameter", `invalid memswap ${swap}`);
    set.push(`memswap=${swap}`);
  }
  for (const name of ["cpusetcpus", "cpusetmems", "cgroupparent"]) {
    const v = q.get(name) ?? "";
    if (v !== "") set.push(`${name}=${v}`);
  }
  if (set.length) {
    throw new BuildError(
      "unsupported",
      `resource limits for build steps are not supported by Arca: ${set.join(", ")} (RUN steps share the build sandbox's limits)`,
    );
  }
}
