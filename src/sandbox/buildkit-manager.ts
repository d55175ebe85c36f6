import path from "node:path";
import type { ControlClient } from "../buildkit/index.js";
import type { ImageStore } from "../images/index.js";
import type { ContainerSpec, Runtime } from "../runtime/index.js";
import { ensureFrontendImage, loadSandboxImage, SANDBOX_IMAGE_REPOSITORY } from "./image/index.js";
import {
  connectBuildkit,
  type Sandbox,
  SandboxLifecycle,
  type SandboxSettings,
  type SandboxStatus,
} from "./sandbox.js";
import { type SandboxLimits, sandboxIsolation, specVersion, subidOverlaps } from "./sandbox-isolation.js";

export const SANDBOX_NAME = SANDBOX_IMAGE_REPOSITORY;
export const CACHE_VOLUME = "buildkit-cache";
/** Label with the version of the sandbox's spec: a container without the current one is recreated. */
const SPEC_LABEL = "com.arca.sandbox-spec";

export interface BuildKitManagerOptions extends SandboxSettings {
  store: ImageStore;
  runtime: Runtime;
  buildkitVersion: string;
  /** cgroup limits of the sandbox (buildkitd and every RUN step share them). */
  limits?: SandboxLimits;
}

/**
 * Brings up BuildKit the way DESIGN.md draws it: the Arca-built image,
 * the `arca-buildkit` container (loopback-only network, cache volume,
 * restart always), reached only through the channel directory.
 */
export class BuildKitManager extends SandboxLifecycle implements Sandbox {
  readonly kind = "runc";

  /** `arca-buildkit`, or `arca-buildkit-NAME` for another local sandbox of the pool. */
  readonly containerName: string;
  readonly #volume: string;

  constructor(private readonly opts: BuildKitManagerOptions) {
    super(opts);
    this.containerName = opts.instance ? `${SANDBOX_NAME}-${opts.instance}` : SANDBOX_NAME;
    this.#volume = opts.instance ? `${CACHE_VOLUME}-${opts.instance}` : CACHE_VOLUME;
  }

  /** The channel endpoint of buildkitd (the proxy inside the sandbox listens there). */
  get buildkitAddr(): string {
    return `unix://${path.join(this.channelDir, "buildkitd.sock")}`;
  }

  /** Where the daemon must serve its egress proxy for the sandbox (buildkitd and RUN steps). */
  get egressSocket(): string {
    return path.join(this.channelDir, "egress.sock");
  }

  /** Where the daemon must serve its registry endpoint for the sandbox. */
  get registrySocket(): string {
    return path.join(this.channelDir, "registry.sock");
  }

  /** Assembles/loads the image, ensures and starts the container, waits for BuildKit. */
  protected async bringUp(signal?: AbortSignal): Promise<{ client: ControlClient; status: SandboxStatus }> {
    const t0 = performance.now();
    const log = this.opts.log ?? (() => {});
    const { configChanged, image: assembled } = await this.prepare(signal);
    const name = `${SANDBOX_NAME}:${this.opts.buildkitVersion}`;
    const loaded = await loadSandboxImage(this.opts.store, assembled.layoutDir, { name });
    log(loaded.loaded ? `loaded sandbox image ${loaded.imageId}` : "sandbox image unchanged");
    // `# syntax=docker/dockerfile:1` resolves through the docker.io mirror: the store must hold it first.
    await ensureFrontendImage({ ...this.opts, signal, log });
    const containerId = await this.#ensureContainer(name, loaded.imageId, configChanged);
    const client = await connectBuildkit(this.buildkitAddr, log, signal);
    return {
      client,
      status: {
        ready: true,
        kind: "runc",
        containerId,
        imageId: loaded.imageId,
        imageLoaded: loaded.loaded,
        readyMs: performance.now() - t0,
      },
    };
  }

  async #ensureContainer(image: string, imageId: string, configChanged = false): Promise<string> {
    const rt = this.opts.runtime;
    const existing = tryInspect(rt, this.containerName);
    const spec = this.#spec(image);
    const version = spec.labels?.[SPEC_LABEL];
    const current = existing && existing.Image === imageId && existing.Config.Labels[SPEC_LABEL] === version;
    if (existing && !current) {
      const why = existing.Image !== imageId ? "sandbox image changed" : "sandbox settings changed";
      this.opts.log?.(`${why}: recreating ${this.containerName}`);
      const hadUserns = rt.get(existing.Id).spec.userns !== undefined;
      await rt.remove(this.containerName, { force: true });
      if (!hadUserns) {
        // Written by a privileged sandbox: host-owned files and trusted.* overlay xattrs, which
        // buildkitd in a user namespace reads as plain directories (userxattr). Start afresh.
        this.opts.log?.(`BuildKit cache written by a privileged sandbox: clearing volume ${this.#volume}`);
        await rt.removeVolume(this.#volume);
      }
    }
    if (!current) for (const w of await subidOverlaps()) this.opts.log?.(`warning: ${w}`);
    const id = current ? existing.Id : (await rt.create(spec)).id;
    const info = rt.inspect(id);
    if (info.State.Running && configChanged) {
      this.opts.log?.(`sandbox configuration changed: restarting ${this.containerName}`);
      await rt.stop(info.Id, { timeoutSec: 10 });
    }
    if (!rt.inspect(id).State.Running) await rt.start(info.Id);
    return info.Id;
  }

  #spec(image: string): ContainerSpec {
    const spec: ContainerSpec = {
      name: this.containerName,
      image,
      labels: { "com.arca.internal": "true", "com.arca.role": "buildkit" },
      networkMode: "none",
      restartPolicy: { name: "always" },
      mounts: [
        { type: "volume", source: this.#volume, target: "/var/lib/buildkit" },
        { type: "bind", source: this.channelDir, target: "/run/arca" },
      ],
      // Not privileged: a user namespace of its own, the capabilities and seccomp profile BuildKit's
      // OCI worker needs, read-only /sys and /proc/sys, cgroup limits (see sandbox-isolation.ts).
      ...sandboxIsolation(this.opts.limits),
    };
    spec.labels = { ...spec.labels, [SPEC_LABEL]: specVersion(spec) };
    return spec;
  }

  /** Stops the sandbox (the daemon is shutting down cleanly) and closes the client. */
  async stop(opts: { keepRunning?: boolean } = {}): Promise<void> {
    this.reset();
    if (!opts.keepRunning)
      await this.opts.runtime.stop(this.containerName, { timeoutSec: 10 }).catch(() => {});
  }
}

function tryInspect(rt: Runtime, name: string): ReturnType<Runtime["inspect"]> | undefined {
  try {
    return rt.inspect(name);
  } catch {
    return undefined;
  }
}
