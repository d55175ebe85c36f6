import { mkdir } from "node:fs/promises";
import path from "node:path";
import { parseArgs } from "node:util";
import v8 from "node:v8";
import { createApiRouter, createApiServer, EventBus } from "../api/index.js";
import {
  BackendPool,
  type BackendSpec,
  type BackendTarget,
  mergeBackendSpecs,
  parseBackendFlag,
  REMOTE_PUSH_SCOPE,
  RemoteTarget,
  readBackendsFile,
  SANDBOX_ADDRESS,
  SandboxTarget,
} from "../backends/index.js";
import { sweepBuildTemps } from "../build/index.js";
import {
  createRegistryServer,
  familiarName,
  ImageStore,
  type RegistryTls,
  serveGrantSocket,
} from "../images/index.js";
import { parseMirror, RegistryClient } from "../registry/index.js";
import { createRuntime } from "../runtime/index.js";
import {
  BuildKitManager,
  defaultGcKeepBytes,
  pinnedBuildkitVersion,
  probeKvm,
  requireTool,
  SANDBOX_REGISTRY_HOST,
  type Sandbox,
  toolsBin,
  VmSandbox,
  vmAssets,
} from "../sandbox/index.js";
import { readTlsFiles } from "../transport/index.js";
import { errorMessage } from "../util/index.js";
import { serveBackendControl } from "./backend-control.js";
import { openDaemonEgress } from "./daemon-egress.js";
import { clearDaemonState, writeDaemonState } from "./daemon-state.js";
import { resolveDataRoot } from "./data-root.js";
import { defaultSocketPath } from "./default-socket.js";
import type { CommandIO } from "./io.js";
import { parseByteSize, parseSandboxLimits } from "./sandbox-limits.js";

const HELP = `Usage: arca daemon [--data-root DIR] [--socket unix:///run/arca/arca.sock]
                   [--sandbox-pids-limit N] [--sandbox-memory SIZE]

Runs Arca: the image store, its registry endpoint on the sandbox channel, and
BuildKit inside the network-less "arca-buildkit" container. Stops on SIGINT/SIGTERM
(the sandbox is stopped too); after a crash, the next start adopts the running sandbox.

  --socket ADDR            API socket (default unix:///run/arca/arca.sock as root,
                           unix://$XDG_RUNTIME_DIR/arca.sock otherwise)
  --max-context-size SIZE  most a POST /build context may take decompressed (default 20g)
  --sandbox KIND           where BuildKit runs: runc (a container, the default), vm (a QEMU VM
                           reached only over virtio-vsock; KVM when it works, else TCG) or auto
                           (vm where KVM works, else runc); see the README's "Sandboxes"
  --sandbox-pids-limit N   most processes in the sandbox, builds included (default 32768; 0: none)
  --sandbox-memory SIZE    its memory limit, e.g. 8g (default 3/4 of the host's memory; 0: none)
  --egress-policy FILE     the egress policy (default <data root>/egress.json; audit mode if absent);
                           reloaded on SIGHUP and \`arca egress reload\`
  --egress-idle-timeout SECONDS  close an egress connection where no byte moved either way for
                           this long, or whose plain-HTTP upstream has not started answering
                           (an upstream that never answers or stalls; default 60; 0: no idle bound)
  --insecure-registry HOST[:PORT]  a registry reached over plain HTTP (repeatable)
  --registry-mirror URL    a mirror of docker.io tried before it by pulls and builds (repeatable)
  --backend NAME=ADDR[,ca=F,cert=F,key=F,weight=N,max=N,registry=HOST:PORT]
                           one more BuildKit backend of the pool (repeatable; also read from
                           <data root>/backends.json): ADDR "sandbox" is one more local sandbox,
                           tcp://HOST:PORT a remote buildkitd over mutual TLS (unix:// and
                           vsock-uds:// too); the built-in sandbox is "default"; see "Scale-out"
  --backend-routing key|round-robin  how builds pick a backend: by key, so each project's cache
                           stays warm (the default), or in turn (for comparison; see bench:pool)
  --registry-listen tcp://HOST:PORT  serve the registry endpoint over mutual TLS too, for remote
                           backends (needs --registry-tlscert, --registry-tlskey, --registry-tlscacert)
`;

export async function runDaemonCommand(argv: string[], io: CommandIO): Promise<number> {
  // The daemon's heap is small (~12 MB) while big uploads stream hundreds of MB of socket buffers
  // through it; V8 counted those against a limit sized to the heap and ran a full GC every ~20 MB
  // (~25 per 512 MiB context, ~0.3 s of its upload). V8's largest own growth factor (4x the live
  // heap) leaves room for the buffers in flight; read by V8 at each GC, so it applies from here on.
  v8.setFlagsFromString("--heap-growing-percent=300");
  const { values } = parseArgs({
    args: argv,
    options: {
      "data-root": { type: "string" },
      socket: { type: "string", short: "H" },
      "max-context-size": { type: "string" },
      sandbox: { type: "string" },
      "sandbox-pids-limit": { type: "string" },
      "sandbox-memory": { type: "string" },
      "egress-policy": { type: "string" },
      "egress-idle-timeout": { type: "string" },
      "insecure-registry": { type: "string", multiple: true },
      "registry-mirror": { type: "string", multiple: true },
      backend: { type: "string", multiple: true },
      "registry-listen": { type: "string" },
      "backend-routing": { type: "string" },
      "registry-tlscert": { type: "string" },
      "registry-tlskey": { type: "string" },
      "registry-tlscacert": { type: "string" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) {
    io.stdout.write(HELP);
    return 0;
  }
  const asked = values.sandbox ?? "runc";
  if (asked !== "runc" && asked !== "vm" && asked !== "auto")
    throw new Error(`--sandbox takes runc, vm or auto, got "${asked}"`);
  const limits = parseSandboxLimits({ pids: values["sandbox-pids-limit"], memory: values["sandbox-memory"] });
  // Decompressed, not as sent: a 28 MB gzip can inflate to gigabytes of spool.
  const maxContextSize = parseByteSize(values["max-context-size"] ?? "20g");
  if (maxContextSize === 0) throw new Error("--max-context-size must be above 0");
  const mirrors = (values["registry-mirror"] ?? []).map((m) => parseMirror(m).href.replace(/\/$/, ""));
  const t0 = performance.now();
  const say = (l: string) => io.stderr.write(`arca: ${l}\n`);
  const dataRoot = resolveDataRoot(values["data-root"]);
  const backendSpecs = mergeBackendSpecs(
    await readBackendsFile(path.join(dataRoot, "backends.json")),
    (values.backend ?? []).map(parseBackendFlag),
  );
  const registryTls = await registryListenTls(values, backendSpecs);
  requireTool("buildkitd");
  requireTool("runc");
  requireTool("arca-proxy");
  await mkdir(path.join(dataRoot, "run"), { recursive: true, mode: 0o700 });
  const stop = new AbortController();
  const onSignal = () => stop.abort(new Error("daemon stopping"));
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  // A request's failure that escaped its handler is a bug to log, not a reason to drop every build.
  const onUnhandled = (err: unknown) => say(`internal error (kept running): ${(err as Error)?.stack ?? err}`);
  process.on("unhandledRejection", onUnhandled);
  // Everything opened below is closed in reverse order, whatever fails on the way.
  const cleanup: (() => Promise<void> | void)[] = [];
  try {
    const events = new EventBus();
    const store = await ImageStore.open(path.join(dataRoot, "images"), {
      onEvent: (e) => events.emit("image", e.type, e.id, e.name ? { name: familiarName(e.name) } : {}),
    });
    cleanup.push(() => store.close());
    // What a crashed daemon left half-written (context spools, partial blobs and uploads) is never resumed.
    const swept = [await store.content.sweepIngest(), await sweepBuildTemps(dataRoot)];
    const files = swept.reduce((n, r) => n + r.files, 0);
    if (files) say(`removed ${files} leftover temp files (${swept.reduce((n, r) => n + r.bytes, 0)} bytes)`);
    const runtime = await createRuntime({
      dataRoot,
      images: store,
      log: say,
      consoleRelayPath: path.join(toolsBin(), "arca-console-relay"),
    });
    cleanup.push(() => runtime.close());
    const unsubscribe = runtime.onEvent((e) =>
      events.emit("container", e.type, e.id, {
        name: e.name,
        ...(e.exitCode === undefined ? {} : { exitCode: String(e.exitCode) }),
      }),
    );
    cleanup.push(unsubscribe);
    // The sandbox's only way out: builds, buildkitd and the daemon's own registry traffic go through it.
    const egress = await openDaemonEgress({
      dataRoot,
      policyFile: values["egress-policy"],
      idleTimeoutMs: parseSeconds("--egress-idle-timeout", values["egress-idle-timeout"]),
      log: say,
    });
    cleanup.push(() => egress.close());
    const onHup = () => void egress.reload();
    process.on("SIGHUP", onHup);
    cleanup.push(() => {
      process.off("SIGHUP", onHup);
    });
    const version = await pinnedBuildkitVersion();
    const kind = asked === "auto" ? await autoSandbox(dataRoot, say, stop.signal) : asked;
    const gcKeepBytes = await defaultGcKeepBytes(dataRoot);
    const registries = {
      insecure: values["insecure-registry"] ?? [],
      certsDir: path.join(dataRoot, "certs.d"),
      mirrors,
    };
    const sandboxSettings = {
      dataRoot,
      toolsBin: toolsBin(),
      store,
      log: say,
      // Sized to the disk as dockerd's builder GC is (not a fixed 10 GiB).
      gcKeepBytes,
      egressCredential: egress.buildkitdCredential,
      registries,
    };
    const manager: Sandbox =
      kind === "vm"
        ? new VmSandbox({
            ...sandboxSettings,
            ...(limits.memory ? { memoryBytes: limits.memory } : {}),
          })
        : new BuildKitManager({ ...sandboxSettings, runtime, buildkitVersion: version, limits });
    // The pool: the built-in sandbox first, then more local sandboxes and remote buildkitds.
    const targets: BackendTarget[] = backendSpecs.map((spec, i) => {
      if (i === 0) return new SandboxTarget(spec, manager, SANDBOX_REGISTRY_HOST);
      if (spec.address !== SANDBOX_ADDRESS) return new RemoteTarget(spec);
      const extra = new BuildKitManager({
        ...sandboxSettings,
        runtime,
        buildkitVersion: version,
        limits,
        instance: spec.name,
      });
      return new SandboxTarget(spec, extra, SANDBOX_REGISTRY_HOST);
    });
    // docker pull/push/login: the daemon's own registry traffic, under the same policy and audit log.
    const registryClient = new RegistryClient({
      store,
      settings: registries,
      dial: { pull: egress.proxy.dialer("daemon:pull"), push: egress.proxy.dialer("daemon:push") },
      stateDir: path.join(dataRoot, "registry"),
    });
    const registry = createRegistryServer(store);
    cleanup.push(() => registry.close());
    // Each local sandbox reaches the egress proxy and the registry endpoint through its own channel.
    for (const t of targets) {
      const sb = t.sandbox;
      if (!sb) continue;
      await sb.prepareChannel();
      await egress.proxy.listen(sb.egressSocket, { sharedGroup: sb.channelGroup });
      await registry.listen(`unix://${sb.registrySocket}`, {
        sharedGroup: sb.channelGroup,
        scope: t.pushScope,
      });
    }
    if (registryTls) {
      const bound = await registry.listen(registryTls.address, {
        tls: registryTls.material,
        scope: REMOTE_PUSH_SCOPE,
      });
      say(`registry endpoint for remote backends on ${bound} (mutual TLS)`);
    }
    // `arca build` (BuildKit driven by the CLI) asks here for its push grant; the run dir is private.
    const grantSocket = path.join(dataRoot, "run", "registry-grants.sock");
    // `arca build` drives the built-in sandbox's buildkitd (the daemon state's address).
    const grants = await serveGrantSocket(registry, grantSocket, targets[0]?.pushScope);
    cleanup.push(() => grants.close());
    const pool = new BackendPool(targets, {
      log: say,
      routing: routing(values["backend-routing"]),
      onEvent: (action, name, attrs) => events.emit("builder", action, name, attrs),
    });
    cleanup.push(() => pool.close());
    const control = await serveBackendControl(pool, path.join(dataRoot, "run", "control.sock"));
    cleanup.push(() => control.close());
    // The API answers at once; builds wait for BuildKit (bounded) while the sandbox comes up.
    const api = createApiServer(
      createApiRouter({
        dataRoot,
        store,
        runtime,
        buildkit: manager,
        pool,
        registryHost: SANDBOX_REGISTRY_HOST,
        allowPush: registry.allowPush,
        maxContextSize,
        egress: egress.proxy,
        registry: registryClient,
        events,
        buildkitVersion: version,
        daemonName: `arca-${process.pid}`,
        log: say,
      }),
      { log: say },
    );
    // A path another user owns or can replace is refused (see checkSocketOwnership).
    const socket = values.socket ?? `unix://${await defaultSocketPath(dataRoot)}`;
    await api.listen(socket.includes("://") ? socket : `unix://${socket}`);
    cleanup.push(() => api.close());
    await pool.start(stop.signal);
    await writeDaemonState(dataRoot, {
      pid: process.pid,
      buildkitAddr: manager.buildkitAddr,
      registryHost: SANDBOX_REGISTRY_HOST,
      grantSocket,
    });
    cleanup.push(() => clearDaemonState(dataRoot));
    const st = manager.status;
    if (targets.length > 1)
      say(`backend pool: ${targets.map((t) => `${t.spec.name} (${t.spec.address})`).join(", ")}`);
    say(
      `ready in ${((performance.now() - t0) / 1000).toFixed(2)}s (${kind === "vm" ? `vm sandbox with ${st.accel}` : `sandbox ${st.imageLoaded ? "image loaded" : "image unchanged"}`}, BuildKit at ${manager.buildkitAddr}, API on ${socket}, data root ${dataRoot})`,
    );
    await new Promise<void>((resolve) =>
      stop.signal.addEventListener("abort", () => resolve(), { once: true }),
    );
    say("stopping");
    return 0;
  } finally {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
    process.off("unhandledRejection", onUnhandled);
    for (const step of cleanup.reverse()) {
      try {
        await step();
      } catch (err) {
        say(`shutdown: ${errorMessage(err)}`);
      }
    }
  }
}

function routing(v: string | undefined): "key" | "round-robin" {
  if (v === undefined || v === "key" || v === "round-robin") return v ?? "key";
  throw new Error(`--backend-routing takes key or round-robin, got "${v}"`);
}

/** `--registry-listen` with its mutual-TLS files; required when the pool has a remote backend. */
async function registryListenTls(
  values: Record<string, string | boolean | string[] | undefined>,
  specs: BackendSpec[],
): Promise<{ address: string; material: RegistryTls } | undefined> {
  const address = values["registry-listen"] as string | undefined;
  const files = {
    cert: values["registry-tlscert"] as string | undefined,
    key: values["registry-tlskey"] as string | undefined,
    ca: values["registry-tlscacert"] as string | undefined,
  };
  const remote = specs.find((s) => s.address !== SANDBOX_ADDRESS);
  if (!address) {
    if (remote)
      throw new Error(
        `backend "${remote.name}" is remote: its results come home through the registry endpoint, so --registry-listen tcp://HOST:PORT (with --registry-tlscert, --registry-tlskey, --registry-tlscacert) is needed`,
      );
    return undefined;
  }
  if (!address.startsWith("tcp://"))
    throw new Error(`--registry-listen takes tcp://HOST:PORT, got "${address}"`);
  if (!files.cert || !files.key || !files.ca)
    throw new Error(
      "--registry-listen needs --registry-tlscert, --registry-tlskey and --registry-tlscacert: nothing listens on TCP without (mutual) TLS",
    );
  const { cert, key, ca } = await readTlsFiles({ cert: files.cert, key: files.key, ca: files.ca });
  return { address, material: { cert: cert as Buffer, key: key as Buffer, ca: ca as Buffer } };
}

/** `--sandbox auto`: the VM where KVM really boots a guest (TCG is too slow to pick unasked), else runc. */
async function autoSandbox(
  dataRoot: string,
  say: (l: string) => void,
  signal: AbortSignal,
): Promise<"vm" | "runc"> {
  let why: string;
  try {
    const kvm = await probeKvm(vmAssets(toolsBin()), path.join(dataRoot, "buildkit", "vm"), signal);
    if (kvm.ok) {
      say("--sandbox auto: vm (KVM works here)");
      return "vm";
    }
    why = kvm.why;
  } catch (err) {
    why = errorMessage(err);
  }
  say(`--sandbox auto: runc (${why})`);
  return "runc";
}

/** A whole number of seconds as milliseconds (undefined when absent). */
function parseSeconds(flag: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  if (!/^\d+$/.test(value)) throw new Error(`${flag} takes a whole number of seconds, got "${value}"`);
  return Number(value) * 1000;
}
