import { existsSync } from "node:fs";
import os from "node:os";
import path from "node:path";

/** Where `npm run setup` installs buildkitd, buildctl, runc and busybox. */
export const toolsBin = path.join(
  process.env.ARCA_TOOLS_DIR ?? path.join(os.homedir(), ".cache/arca/tools"),
  "bin",
);

/** Absolute path of a provisioned tool; a missing tool fails the test with the command that installs it. */
export function tool(name: string): string {
  const p = path.join(toolsBin, name);
  if (!existsSync(p)) throw new Error(`${name} not found in ${toolsBin}: run \`npm run setup\` first`);
  return p;
}
