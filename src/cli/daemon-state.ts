import { readFile, rm, writeFile } from "node:fs/promises";
import path from "node:path";

/** What a running `arca daemon` tells other arca commands: where BuildKit and the registry endpoint are. */
export interface DaemonState {
  pid: number;
  buildkitAddr: string;
  registryHost: string;
  /** Where `arca build` asks for the registry endpoint to accept its push (see serveGrantSocket). */
  grantSocket?: string;
}

const file = (dataRoot: string) => path.join(dataRoot, "run", "daemon.json");

export async function writeDaemonState(dataRoot: string, s: DaemonState): Promise<void> {
  await writeFile(file(dataRoot), JSON.stringify(s));
}

export async function clearDaemonState(dataRoot: string): Promise<void> {
  await rm(file(dataRoot), { force: true });
}

/** The running daemon's state, or undefined when none runs (stale files are ignored). */
export async function readDaemonState(dataRoot: string): Promise<DaemonState | undefined> {
  try {
    const s = JSON.parse(await readFile(file(dataRoot), "utf8")) as DaemonState;
    process.kill(s.pid, 0);
    return s;
  } catch {
    return undefined;
  }
}
