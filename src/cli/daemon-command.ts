import { mkdir } from "node:fs/promises";
import path from "node:path";
import { parseArgs } from "node:util";
import { createControlClient, waitReady } from "../buildkit/index.js";
import { createRegistryServer, ImageStore } from "../images/index.js";
import { HostBuildkitd, requireTool, toolsBin } from "../sandbox/index.js";
import { parseDialAddress } from "../transport/index.js";
import { clearDaemonState, writeDaemonState } from "./daemon-state.js";
import { resolveDataRoot } from "./data-root.js";
import type { CommandIO } from "./io.js";

const HELP = `Usage: arca daemon [--data-root DIR] [--registry tcp://127.0.0.1:PORT]

Runs Arca: the image store's registry endpoint and a supervised buildkitd
whose docker.io mirror is that endpoint. Stops on SIGINT/SIGTERM.
`;

export async function runDaemonCommand(argv: string[], io: CommandIO): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      "data-root": { type: "string" },
      registry: { type: "string", default: "tcp://127.0.0.1:5000" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) {
    io.stdout.write(HELP);
    return 0;
  }
  const t0 = performance.now();
  const dataRoot = resolveDataRoot(values["data-root"]);
  requireTool("buildkitd");
  requireTool("runc");
  await mkdir(path.join(dataRoot, "run"), { recursive: true, mode: 0o700 });
  const store = await ImageStore.open(path.join(dataRoot, "images"));
  const registry = createRegistryServer(store);
  const registryAddr = await registry.listen(values.registry as string);
  const registryHost = new URL(registryAddr).host;
  const bk = new HostBuildkitd({
    dir: path.join(dataRoot, "buildkit"),
    socket: path.join(dataRoot, "run", "buildkitd.sock"),
    registryHost,
    toolsBin: toolsBin(),
    log: (l) => io.stderr.write(`arca: ${l}\n`),
  });
  await bk.start();
  const client = createControlClient(parseDialAddress(bk.addr));
  const stop = new AbortController();
  const onSignal = () => stop.abort();
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  try {
    await waitReady(client, {
      signal: stop.signal,
      onConnectAttempt: ({ attempt, attempts, error }) => {
        if (error)
          io.stderr.write(`arca: waiting for BuildKit (attempt ${attempt}/${attempts}): ${error.message}\n`);
      },
    });
    const info = await client.control.info({});
    await writeDaemonState(dataRoot, { pid: process.pid, buildkitAddr: bk.addr, registryHost });
    io.stderr.write(
      `arca: ready in ${((performance.now() - t0) / 1000).toFixed(2)}s — BuildKit ${info.buildkitVersion?.version} at ${bk.addr}, registry endpoint ${registryAddr}, data root ${dataRoot}\n`,
    );
    await new Promise<void>((resolve) =>
      stop.signal.addEventListener("abort", () => resolve(), { once: true }),
    );
    io.stderr.write("arca: stopping\n");
    return 0;
  } finally {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
    client.close();
    await clearDaemonState(dataRoot);
    await bk.stop();
    await registry.close();
    store.close();
  }
}
