import { randomBytes } from "node:crypto";
import { lstat, readdir, rm } from "node:fs/promises";
import path from "node:path";

/**
 * `<prefix><pid>-<random><suffix>`: a temp file name that says which process writes it, so a later
 * process can tell a crashed writer's leftovers (kill -9, power loss) from files still being written by a
 * live one (the daemon and `arca` commands share a data root).
 */
export function ownedTempName(prefix: string, suffix = ""): string {
  return `${prefix}${process.pid}-${randomBytes(8).toString("hex")}${suffix}`;
}

/** The pid an owned temp name carries, or undefined for any other name. */
export function tempOwner(name: string, prefix: string): number | undefined {
  if (!name.startsWith(prefix)) return undefined;
  const m = /^(\d+)-/.exec(name.slice(prefix.length));
  return m ? Number(m[1]) : undefined;
}

function alive(pid: number): boolean {
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: it exists, owned by someone else.
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

export interface SweepReport {
  files: number;
  bytes: number;
}

/**
 * Removes the files in dir that start with one of the prefixes and whose writer is gone: names carrying
 * a dead pid, and names from before owners were recorded (no pid). A missing dir is empty.
 */
export async function sweepOrphanedTemps(
  dir: string,
  prefixes: string[],
  /** Also this process's own files: it has none yet (its pid may be a dead daemon's, as in a container). */
  opts: { ownToo?: boolean } = {},
): Promise<SweepReport> {
  const report: SweepReport = { files: 0, bytes: 0 };
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return report;
    throw err;
  }
  for (const name of names) {
    const prefix = prefixes.find((p) => name.startsWith(p));
    if (!prefix) continue;
    const owner = tempOwner(name, prefix);
    if (owner !== undefined && alive(owner) && !(opts.ownToo && owner === process.pid)) continue;
    const file = path.join(dir, name);
    const st = await lstat(file).catch(() => undefined);
    if (!st) continue;
    await rm(file, { recursive: true, force: true });
    report.files++;
    report.bytes += st.isFile() ? st.size : 0;
  }
  return report;
}
