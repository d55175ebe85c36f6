/**
 * The daemon's egress part alone, as `arca daemon` runs it (openDaemonEgress,
 * SIGHUP reloads, daemon state with its pid), without the sandbox: the
 * process `arca egress reload` talks to in test/egress-cli.test.ts.
 *
 *   node --import tsx test/support/egress-daemon.ts DATA_ROOT
 */
import { mkdir } from "node:fs/promises";
import path from "node:path";
import { openDaemonEgress } from "../../src/cli/daemon-egress.js";
import { writeDaemonState } from "../../src/cli/daemon-state.js";

const dataRoot = process.argv[2] as string;
await mkdir(path.join(dataRoot, "run"), { recursive: true });
const egress = await openDaemonEgress({ dataRoot, log: (l) => process.stderr.write(`${l}\n`) });
const { port } = await egress.proxy.listenTcp("127.0.0.1", 0);
process.on("SIGHUP", () => void egress.reload());
process.on("SIGTERM", () => void egress.close().then(() => process.exit(0)));
await writeDaemonState(dataRoot, { pid: process.pid, buildkitAddr: "", registryHost: "" });
process.stdout.write(`ready ${port}\n`);
