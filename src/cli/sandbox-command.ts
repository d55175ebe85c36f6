import { parseArgs } from "node:util";
import { assembleSandboxImage, toolsBin } from "../sandbox/index.js";
import { errorMessage } from "../util/index.js";
import { resolveDataRoot } from "./data-root.js";
import type { CommandIO } from "./io.js";

const HELP = `Usage: arca sandbox COMMAND

Commands:
  image                  Assemble the BuildKit sandbox image (OCI layout under the data root);
                         prints the manifest digest. Does nothing when its inputs are unchanged.

Options:
  --data-root DIR        Arca data root (default $ARCA_DATA_ROOT or ~/.arca)
`;

/** `arca sandbox image [--data-root D]`: progress on stderr, the manifest digest on stdout. */
export async function runSandboxCommand(args: string[], io: CommandIO): Promise<number> {
  let parsed: { values: { "data-root"?: string; help?: boolean }; positionals: string[] };
  try {
    parsed = parseArgs({
      args,
      allowPositionals: true,
      options: { "data-root": { type: "string" }, help: { type: "boolean", short: "h" } },
    });
  } catch (err) {
    io.stderr.write(`arca: ${errorMessage(err)}\n`);
    return 1;
  }
  const [sub, ...rest] = parsed.positionals;
  if (parsed.values.help || sub === undefined || sub === "help") {
    io.stdout.write(HELP);
    return sub === undefined && !parsed.values.help ? 1 : 0;
  }
  if (sub !== "image" || rest.length > 0) {
    io.stderr.write(`arca: unknown sandbox command "${[sub, ...rest].join(" ")}"\n${HELP}`);
    return 1;
  }
  const ac = new AbortController();
  const onSignal = () => ac.abort(new Error("interrupted"));
  process.once("SIGINT", onSignal);
  try {
    const image = await assembleSandboxImage({
      dataRoot: resolveDataRoot(parsed.values["data-root"]),
      toolsBin: toolsBin(),
      signal: ac.signal,
      onProgress: (line) => io.stderr.write(`${line}\n`),
    });
    io.stdout.write(`${image.manifestDigest}\n`);
    return 0;
  } catch (err) {
    io.stderr.write(`arca: ${errorMessage(err)}\n`);
    return 1;
  } finally {
    process.off("SIGINT", onSignal);
  }
}
