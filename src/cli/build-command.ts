import { writeFile } from "node:fs/promises";
import path from "node:path";
import { parseArgs } from "node:util";
import {
  BuildKitError,
  build,
  mapStatusText,
  PlainProgressPrinter,
  parseSecretSpec,
  type SecretSource,
} from "../buildkit/index.js";
import { type PushGrant, requestPushGrant, storeExportText } from "../images/index.js";
import { readDaemonState } from "./daemon-state.js";
import { resolveDataRoot } from "./data-root.js";
import type { CommandIO } from "./io.js";

const HELP = `Usage: arca build [OPTIONS] PATH

Build an image from a Dockerfile with BuildKit; the result lands in Arca's image store.

Options:
  -t, --tag NAME            Name and optionally a tag (repeatable)
  -f, --file PATH           Dockerfile (default PATH/Dockerfile)
      --target STAGE        Build stage to stop at
      --build-arg K=V       Build-time variable (repeatable; K alone takes it from the environment)
      --label K=V           Image label (repeatable)
      --no-cache            Do not use the build cache
      --pull                Always resolve base images afresh
      --platform P          Target platform (e.g. linux/amd64)
      --network MODE        RUN network: none (default) or host
  -o, --output SPEC         type=local,dest=DIR | type=tar,dest=FILE | type=oci,dest=FILE | type=docker,dest=FILE (repeatable)
      --secret SPEC         id=ID,src=FILE or id=ID,env=VAR (repeatable)
      --progress MODE       plain (default) or quiet
  -q, --quiet               Print only the image ID
      --iidfile FILE        Write the image ID to FILE
      --buildkit-addr ADDR  BuildKit address (unix://, tcp://, vsock-uds://); default $BUILDKIT_HOST
      --registry ADDR       Serve the image store's registry endpoint on ADDR (tcp://127.0.0.1:PORT)
                            during the build; buildkitd pushes results there and mirrors docker.io to it
      --data-root DIR       Arca data root (default $ARCA_DATA_ROOT or ~/.arca)
`;

export async function runBuildCommand(argv: string[], io: CommandIO): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      tag: { type: "string", short: "t", multiple: true },
      file: { type: "string", short: "f" },
      target: { type: "string" },
      "build-arg": { type: "string", multiple: true },
      label: { type: "string", multiple: true },
      "no-cache": { type: "boolean" },
      pull: { type: "boolean" },
      platform: { type: "string" },
      network: { type: "string" },
      output: { type: "string", short: "o", multiple: true },
      secret: { type: "string", multiple: true },
      progress: { type: "string" },
      quiet: { type: "boolean", short: "q" },
      iidfile: { type: "string" },
      "buildkit-addr": { type: "string" },
      registry: { type: "string" },
      "data-root": { type: "string" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) {
    io.stdout.write(HELP);
    return 0;
  }
  if (positionals.length !== 1) {
    io.stderr.write(`arca build: requires exactly 1 argument (the build context)\n${HELP}`);
    return 1;
  }
  const dataRoot = resolveDataRoot(values["data-root"]);
  // Without an explicit address, build through the running `arca daemon` (its BuildKit and registry endpoint).
  const daemon =
    values["buildkit-addr"] || process.env.BUILDKIT_HOST ? undefined : await readDaemonState(dataRoot);
  const addr = values["buildkit-addr"] ?? process.env.BUILDKIT_HOST ?? daemon?.buildkitAddr;
  if (!addr) {
    throw new BuildKitError(
      "invalid_option",
      "no BuildKit: start `arca daemon` (npm start) or pass --buildkit-addr",
    );
  }
  const network = values.network ?? "none";
  if (network !== "none" && network !== "host") {
    throw new BuildKitError("invalid_option", `unsupported network mode "${network}" (none or host)`);
  }
  const quiet = values.quiet || values.progress === "quiet";
  const outputs = values.output ?? [];
  const needStore = outputs.length === 0;
  if (needStore && !values.registry && !daemon) {
    throw new BuildKitError(
      "invalid_option",
      "building into the image store needs --registry (or use --output)",
    );
  }

  const ac = new AbortController();
  const onSignal = () => ac.abort(new Error("interrupted"));
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  // The store (SQLite, native module) loads only when this process serves the registry endpoint itself.
  const images = needStore && !daemon ? await import("../images/index.js") : undefined;
  const store = images ? await images.ImageStore.open(path.join(dataRoot, "images")) : undefined;
  const registry = images && store ? images.createRegistryServer(store) : undefined;
  let printer: PlainProgressPrinter | undefined;
  let grant: PushGrant | undefined;
  try {
    const registryHost = registry
      ? hostOf(await registry.listen(values.registry as string))
      : daemon?.registryHost;
    // The registry endpoint takes pushes only for names a build registered.
    if (registry) grant = registry.allowPush(values.tag ?? [], ac.signal);
    else if (registryHost && daemon?.grantSocket) {
      grant = await requestPushGrant(daemon.grantSocket, values.tag ?? [], ac.signal);
    }
    printer = quiet ? undefined : new PlainProgressPrinter(io.stderr);
    const result = await build({
      addr,
      context: path.resolve(positionals[0] as string),
      dockerfile: values.file,
      target: values.target,
      buildArgs: keyValues(values["build-arg"] ?? [], "build-arg", true),
      labels: keyValues(values.label ?? [], "label", false),
      noCache: values["no-cache"],
      pull: values.pull,
      platform: values.platform,
      network,
      tags: values.tag,
      outputs,
      secrets: secrets(values.secret ?? []),
      imageStore: registryHost ? { registryHost, danglingPath: grant?.danglingPath } : undefined,
      signal: ac.signal,
      onProgress: printer
        ? (s) =>
            printer?.update(
              registryHost ? mapStatusText(s, (t) => storeExportText(registryHost, t, needStore)) : s,
            )
        : undefined,
      onConnectAttempt: ({ attempt, attempts, delayMs, error }) => {
        if (error && !quiet) {
          io.stderr.write(
            `connecting to BuildKit (attempt ${attempt}/${attempts}, retry in ${delayMs / 1000}s): ${error.message}\n`,
          );
        }
      },
    });
    // Flush held-back progress (the printer batches like buildctl) before the summary.
    printer?.finish();
    printer = undefined;
    const id = result.imageId;
    if (id) {
      if (quiet) io.stdout.write(`${id}\n`);
      else {
        io.stderr.write(`Successfully built ${id}\n`);
        for (const t of values.tag ?? []) io.stderr.write(`Successfully tagged ${t}\n`);
      }
      if (values.iidfile) await writeFile(values.iidfile, id);
    }
    return 0;
  } catch (err) {
    printer?.finish();
    if (err instanceof BuildKitError) {
      io.stderr.write(`ERROR: ${err.message}\n`);
      return 1;
    }
    throw err;
  } finally {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
    grant?.release();
    await registry?.close();
    store?.close();
  }
}

/** `K=V` pairs; with fromEnv, a bare `K` takes its value from the environment (as docker does). */
function keyValues(list: string[], what: string, fromEnv: boolean): Record<string, string> {
  const out: Record<string, string> = {};
  for (const item of list) {
    const eq = item.indexOf("=");
    if (eq > 0) out[item.slice(0, eq)] = item.slice(eq + 1);
    else if (fromEnv && eq < 0 && process.env[item] !== undefined) out[item] = process.env[item] as string;
    else if (!fromEnv || eq === 0)
      throw new BuildKitError("invalid_option", `invalid ${what} "${item}" (want KEY=VALUE)`);
  }
  return out;
}

function secrets(specs: string[]): Record<string, SecretSource> {
  const out: Record<string, SecretSource> = {};
  for (const s of specs) {
    const { id, source } = parseSecretSpec(s);
    out[id] = source;
  }
  return out;
}

/** `tcp://127.0.0.1:5000` → `127.0.0.1:5000`, the host BuildKit pushes to. */
function hostOf(addr: string): string {
  const u = new URL(addr);
  if (u.protocol !== "tcp:")
    throw new BuildKitError("invalid_option", `--registry must be a tcp:// address, got ${addr}`);
  return u.host;
}
