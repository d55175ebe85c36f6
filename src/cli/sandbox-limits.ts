import type { SandboxLimits } from "../sandbox/index.js";

const UNITS: Record<string, number> = { "": 1, b: 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4 };

/** A size as `docker run --memory` takes it: a number with an optional b, k, m, g or t suffix (binary). */
export function parseByteSize(text: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([bkmgt]?)b?$/i.exec(text.trim());
  const n = m ? Math.floor(Number(m[1]) * (UNITS[(m[2] ?? "").toLowerCase()] ?? Number.NaN)) : Number.NaN;
  if (!Number.isSafeInteger(n))
    throw new Error(`invalid size ${JSON.stringify(text)} (e.g. 512m, 8g; 0 for no limit)`);
  return n;
}

/** `--sandbox-pids-limit N` and `--sandbox-memory SIZE` (0 for no limit; absent: the defaults). */
export function parseSandboxLimits(values: { pids?: string; memory?: string }): SandboxLimits {
  const limits: SandboxLimits = {};
  if (values.pids !== undefined) {
    const n = Number(values.pids);
    if (!/^\d+$/.test(values.pids.trim()) || !Number.isSafeInteger(n) || (n > 0 && n < 64))
      throw new Error(
        `invalid --sandbox-pids-limit ${JSON.stringify(values.pids)} (at least 64; 0 for no limit)`,
      );
    limits.pidsLimit = n;
  }
  if (values.memory !== undefined) {
    const n = parseByteSize(values.memory);
    if (n > 0 && n < 64 * 1024 ** 2)
      throw new Error(
        `invalid --sandbox-memory ${JSON.stringify(values.memory)} (at least 64m; 0 for no limit)`,
      );
    limits.memory = n;
  }
  return limits;
}
