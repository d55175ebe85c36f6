import { errorMessage, noSpaceMessage } from "../util/index.js";
import { type CommandIO, processIO } from "./io.js";

const USAGE = `Usage: arca COMMAND

Commands:
  daemon    Run Arca: registry endpoint and supervised BuildKit
  build     Build an image from a Dockerfile with BuildKit
  sandbox   Assemble the BuildKit sandbox image (arca sandbox image)
  image     Manage images in Arca's store (import, ls, inspect, tag, rm, save, load)
  egress    The egress audit log and policy (arca egress log, arca egress reload)
  backend   The daemon's BuildKit backends (arca backend ls, drain, undrain, rm)

Run 'arca COMMAND --help' for more information on a command.
`;

export async function main(argv: string[], io: CommandIO = processIO): Promise<number> {
  const [cmd, ...rest] = argv;
  try {
    switch (cmd) {
      case "build":
        // Commands load lazily: start-up time is part of every build's wall time.
        return await (await import("./build-command.js")).runBuildCommand(rest, io);
      case "daemon":
        return await (await import("./daemon-command.js")).runDaemonCommand(rest, io);
      case "sandbox":
        return await (await import("./sandbox-command.js")).runSandboxCommand(rest, io);
      case "image":
        return await (await import("./image-commands.js")).runImageCommand(rest, io);
      case "egress":
        return await (await import("./egress-command.js")).runEgressCommand(rest, io);
      case "backend":
        return await (await import("./backend-command.js")).runBackendCommand(rest, io);
      case undefined:
      case "help":
      case "--help":
      case "-h":
        io.stdout.write(USAGE);
        return cmd === undefined ? 1 : 0;
      default:
        io.stderr.write(`arca: unknown command "${cmd}"\n${USAGE}`);
        return 1;
    }
  } catch (err) {
    io.stderr.write(`arca: ${noSpaceMessage(err) ?? errorMessage(err)}\n`);
    return 1;
  }
}
