import path from "node:path";
import { parseArgs } from "node:util";
import type { BackendView } from "../backends/index.js";
import { callBackendControl, formatBackendList } from "./backend-control.js";
import { resolveDataRoot } from "./data-root.js";
import type { CommandIO } from "./io.js";

const HELP = `Usage: arca backend COMMAND [--data-root DIR]

The daemon's pool of BuildKit backends (see the README's "Scale-out").

Commands:
  ls              one line per backend: name, address, state, running builds, builds done
  drain NAME      stop sending new builds to NAME and wait until its running builds end
  undrain NAME    send builds to NAME again
  rm NAME         take NAME out of the pool (drain it first; the configuration is not changed)

Options:
  --data-root DIR   Arca data root (default $ARCA_DATA_ROOT or ~/.arca)
  --json            ls: the backends as JSON
`;

export async function runBackendCommand(args: string[], io: CommandIO): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      "data-root": { type: "string" },
      json: { type: "boolean" },
      help: { type: "boolean", short: "h" },
    },
  });
  const [sub, name, ...extra] = positionals;
  if (values.help || sub === undefined) {
    io.stdout.write(HELP);
    return values.help ? 0 : 1;
  }
  const socket = path.join(resolveDataRoot(values["data-root"]), "run", "control.sock");
  const needsName = sub === "drain" || sub === "undrain" || sub === "rm";
  if ((sub !== "ls" && !needsName) || (needsName && !name) || extra.length || (sub === "ls" && name)) {
    io.stderr.write(`arca: unknown backend command "${positionals.join(" ")}"\n${HELP}`);
    return 1;
  }
  const at = `/backends/${encodeURIComponent(name ?? "")}`;
  switch (sub) {
    case "ls": {
      const list = (await callBackendControl(socket, "GET", "/backends")) as BackendView[];
      io.stdout.write(values.json ? `${JSON.stringify(list, null, 2)}\n` : formatBackendList(list));
      return 0;
    }
    case "drain":
      await callBackendControl(socket, "POST", `${at}/drain`, (line) => {
        const running = (line as { running?: number }).running;
        if (running !== undefined)
          io.stderr.write(`draining ${name}: waiting for ${running} running build(s)\n`);
      });
      io.stdout.write(`${name} drained\n`);
      return 0;
    case "undrain":
      await callBackendControl(socket, "POST", `${at}/undrain`);
      io.stdout.write(`${name} takes builds again\n`);
      return 0;
    default:
      await callBackendControl(socket, "DELETE", at);
      io.stdout.write(`${name} removed from the pool\n`);
      return 0;
  }
}
