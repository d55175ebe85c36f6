import os from "node:os";
import path from "node:path";

/** `--data-root`, else $ARCA_DATA_ROOT, else ~/.arca. */
export function resolveDataRoot(flag: string | undefined): string {
  return path.resolve(flag ?? process.env.ARCA_DATA_ROOT ?? path.join(os.homedir(), ".arca"));
}
