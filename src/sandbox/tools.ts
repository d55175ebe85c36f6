import { existsSync } from "node:fs";
import os from "node:os";
import path from "node:path";

/** `${ARCA_TOOLS_DIR:-~/.cache/arca/tools}/bin`, where `npm run setup` puts buildkitd, buildctl, runc. */
export function toolsBin(): string {
  return path.join(process.env.ARCA_TOOLS_DIR ?? path.join(os.homedir(), ".cache/arca/tools"), "bin");
}

/** Path of a provisioned tool, or an error naming the command that installs it. */
export function requireTool(name: string): string {
  const p = path.join(toolsBin(), name);
  if (!existsSync(p)) throw new Error(`${name} not found in ${toolsBin()}: run \`npm run setup\``);
  return p;
}
