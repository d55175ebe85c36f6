import path from "node:path";
import { type ControlClient, createControlClient, waitReady } from "../buildkit/index.js";
import type { ImageStore } from "../images/index.js";
import type { ContainerSpec, Runtime } from "../runtime/index.js";
import { parseDialAddress } from "../transport/index.js";
import { abortReason } from "../util/index.js";
import { type RegistrySettings, writeChannelConfig } from "./channel-config.js";
import {
  assembleSandboxImage,
  ensureFrontendImage,
  loadSandboxImage,
  SANDBOX_IMAGE_REPOSITORY,
  SANDBOX_REGISTRY_HOST,
} from "./image/index.js";
import {
  SANDBOX_USERNS,
  type SandboxLimits,
  sandboxIsolation,
  shareChannel,
  specVersion,
  subidOverlaps,
} from "./sandbox-isolation.js";

/** How long BuildKit may take to answer after the sandbox starts before waiting is logged. */
const QUIET_START_MS = 3000;

export const SANDBOX_NAME = SANDBOX_IMAGE_REPOSITORY;
export const CACHE_VOLUME = "buildkit-cache";
/** Label with the version of the sandbox's spec: a container without the current one is recreated. */
const SPEC_LABEL = "com.arca.sandbox-spec";

export interface BuildKitManagerOptions {
  dataRoot: string;
  toolsBin: string;
  store: ImageStore;
  runtime: Runtime;
  buildkitVersion: string;
  log?: (line: string) => void;
  /** cgroup limits of the sandbox (buildkitd and every RUN step share them). */
  limits?: SandboxLimits;
  /** Insecure registries and CA certificates, shared with BuildKit through buildkitd.toml. */
  registries?: RegistrySettings;
  /** buildkitd's egress proxy credential (`user:password`); without it buildkitd has no way out. */
  egressCredential?: string;
  gcKeepBytes?: number;
}

export interface SandboxStatus {
  ready: boolean;
  containerId?: string;
  imageId?: string;
  imageLoaded?: boolean;
  /** Milliseconds from start() to ready. */
  readyMs?: number;
}

/**
 * Brings up BuildKit the way DESIGN.md draws it: the Arca-built image,
 * the `arca-buildkit` container (loopback-only network, cache volume,
 * restart always), reached only through the channel directory.
 */
export class BuildKitManager {
  readonly channelDir: string;
  #client: ControlClient | undefined;
  #ready: Promise<ControlClient> | undefined;
  #status: SandboxStatus = { ready: false };

  constructor(private readonly opts: BuildKitManagerOptions) {
    this.channelDir = path.join(opts.dataRoot, "run", "sandbox");
  }

  /** The channel endpoint of buildkitd (the proxy inside the sandbox listens there). */
  get buildkitAddr(): string {
    return `unix://${path.join(this.channelDir, "buildkitd.sock")}`;
  }

  /** The group through which the channel directory is shared with the sandbox's root. */
  get channelGroup(): number {
    return SANDBOX_USERNS.hostId;
  }

  /** Where the daemon must serve its egress proxy for the sandbox (buildkitd and RUN steps). */
  get egressSocket(): string {
    return path.join(this.channelDir, "egress.sock");
  }

  /** Where the daemon must serve its registry endpoint for the sandbox. */
  get registrySocket(): string {
    return path.join(this.channelDir, "registry.sock");
  }

  get status(): SandboxStatus {
    return { ...this.#status };
  }

  async prepareChannel(): Promise<void> {
    // Root's, group-shared with the sandbox's root (its user namespace); see shareChannel.
    await shareChannel(this.channelDir);
  }

  /** Assembles/loads the image, ensures and starts the container, waits for BuildKit. */
  start(signal?: AbortSignal): Promise<ControlClient> {
    this.#ready ??= this.#start(signal).catch((err) => {
      this.#ready = undefined;
      throw err;
    });
    return this.#ready;
  }

  async #start(signal?: AbortSignal): Promise<ControlClient> {
    const t0 = performance.now();
    const log = this.opts.log ?? (() => {});
    const configChanged = await writeChannelConfig({
      channelDir: this.channelDir,
      registryHost: SANDBOX_REGISTRY_HOST,
      registries: this.opts.registries,
      egressCredential: this.opts.egressCredential,
      gcKeepBytes: this.opts.gcKeepBytes,
    });
    await this.prepareChannel();
    const assembled = await assembleSandboxImage({
      dataRoot: this.opts.dataRoot,
      toolsBin: this.opts.toolsBin,
      signal,
      onProgress: (l: string) => log(l),
    });
    const name = `${SANDBOX_NAME}:${this.opts.buildkitVersion}`;
    const loaded = await loadSandboxImage(this.opts.store, assembled.layoutDir, { name });
    log(loaded.loaded ? `loaded sandbox image ${loaded.imageId}` : "sandbox image unchanged");
    // `# syntax=docker/dockerfile:1` resolves through the docker.io mirror: the store must hold it first.
    await ensureFrontendImage({ ...this.opts, signal, log });
    const containerId = await this.#ensureContainer(name, loaded.imageId, configChanged);
    const client = createControlClient(parseDialAddress(this.buildkitAddr));
    // buildkitd takes about a second to listen: early refusals are expected, only a slow start is news.
    const quietUntil = Date.now() + QUIET_START_MS;
    try {
      await waitReady(client, {
        signal,
        onConnectAttempt: ({ attempt, attempts, error }) => {
          if (error && Date.now() > quietUntil)
            log(`waiting for BuildKit in the sandbox (attempt ${attempt}/${attempts}): ${error.message}`);
        },
      });
      // Health: a worker must be there, not just a listening socket.
      const workers = await client.control.listWorkers({}, { signal });
      if (workers.record.length === 0) throw new Error("BuildKit in the sandbox has no worker");
    } catch (err) {
      client.close();
      throw err;
    }
    this.#client = client;
    this.#status = {
      ready: true,
      containerId,
      imageId: loaded.imageId,
      imageLoaded: loaded.loaded,
      readyMs: performance.now() - t0,
    };
    return client;
  }

  async #ensureContainer(image: string, imageId: string, configChanged = false): Promise<string> {
    const rt = this.opts.runtime;
    const existing = tryInspect(rt, SANDBOX_NAME);
    const spec = this.#spec(image);
    const version = spec.labels?.[SPEC_LABEL];
    const current = existing && existing.Image === imageId && existing.Config.Labels[SPEC_LABEL] === version;
    if (existing && !current) {
      const why = existing.Image !== imageId ? "sandbox image changed" : "sandbox settings changed";
      this.opts.log?.(`${why}: recreating ${SANDBOX_NAME}`);
      const hadUserns = rt.get(existing.Id).spec.userns !== undefined;
      await rt.remove(SANDBOX_NAME, { force: true });
      if (!hadUserns) {
        // Written by a privileged sandbox: host-owned files and trusted.* overlay xattrs, which
        // buildkitd in a user namespace reads as plain directories (userxattr). Start afresh.
        this.opts.log?.(`BuildKit cache written by a privileged sandbox: clearing volume ${CACHE_VOLUME}`);
        await rt.removeVolume(CACHE_VOLUME);
      }
    }
    if (!current) for (const w of await subidOverlaps()) this.opts.log?.(`warning: ${w}`);
    const id = current ? existing.Id : (await rt.create(spec)).id;
    const info = rt.inspect(id);
    if (info.State.Running && configChanged) {
      this.opts.log?.(`sandbox configuration changed: restarting ${SANDBOX_NAME}`);
      await rt.stop(info.Id, { timeoutSec: 10 });
    }
    if (!rt.inspect(id).State.Running) await rt.start(info.Id);
    return info.Id;
  }

  #spec(image: string): ContainerSpec {
    const spec: ContainerSpec = {
      name: SANDBOX_NAME,
      image,
      labels: { "com.arca.internal": "true", "com.arca.role": "buildkit" },
      networkMode: "none",
      restartPolicy: { name: "always" },
      mounts: [
        { type: "volume", source: CACHE_VOLUME, target: "/var/lib/buildkit" },
        { type: "bind", source: this.channelDir, target: "/run/arca" },
      ],
      // Not privileged: a user namespace of its own, the capabilities and seccomp profile BuildKit's
      // OCI worker needs, read-only /sys and /proc/sys, cgroup limits (see sandbox-isolation.ts).
      ...sandboxIsolation(this.opts.limits),
    };
    spec.labels = { ...spec.labels, [SPEC_LABEL]: specVersion(spec) };
    return spec;
  }

  /** The Control client once BuildKit is ready; waits (bounded by the signal) while it starts. */
  async client(signal?: AbortSignal): Promise<ControlClient> {
    if (this.#client) return this.#client;
    if (!this.#ready) throw new Error("BuildKit manager not started");
    if (!signal) return this.#ready;
    return Promise.race([
      this.#ready,
      new Promise<never>((_, reject) =>
        signal.addEventListener("abort", () => reject(abortReason(signal)), { once: true }),
      ),
    ]);
  }

  /** Stops the sandbox (the daemon is shutting down cleanly) and closes the client. */
  async stop(opts: { keepRunning?: boolean } = {}): Promise<void> {
    this.#client?.close();
    this.#client = undefined;
    this.#ready = undefined;
    this.#status = { ready: false };
    if (!opts.keepRunning) await this.opts.runtime.stop(SANDBOX_NAME, { timeoutSec: 10 }).catch(() => {});
  }
}

function tryInspect(rt: Runtime, name: string): ReturnType<Runtime["inspect"]> | undefined {
  try {
    return rt.inspect(name);
  } catch {
    return undefined;
  }
}
