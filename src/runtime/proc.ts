import { readFile } from "node:fs/promises";

/**
 * The starttime field of /proc/<pid>/stat (clock ticks since boot), or undefined when the process is gone
 * or a zombie. Pairing a pid with it tells a live process from a recycled pid; zombies count as gone
 * because PID 1 on some hosts never reaps the orphans it inherits.
 */
export async function processStartTime(pid: number): Promise<string | undefined> {
  if (!Number.isInteger(pid) || pid <= 0) return undefined;
  let stat: string;
  try {
    stat = await readFile(`/proc/${pid}/stat`, "utf8");
  } catch {
    return undefined;
  }
  // comm may contain spaces and parentheses: fields resume after the last ")".
  const rest = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  if (rest[0] === "Z" || rest[0] === "X") return undefined;
  return rest[19];
}

export async function isAlive(pid: number, startTime: string): Promise<boolean> {
  if (!startTime) return false;
  return (await processStartTime(pid)) === startTime;
}
