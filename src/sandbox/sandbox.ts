import path from "node:path";
import { type ControlClient, createControlClient, waitReady } from "../buildkit/index.js";
import { parseDialAddress } from "../transport/index.js";
import { abortReason } from "../util/index.js";
import { type RegistrySettings, writeChannelConfig } from "./channel-config.js";
import { assembleSandboxImage, SANDBOX_REGISTRY_HOST, type SandboxImage } from "./image/index.js";
import { SANDBOX_USERNS, shareChannel } from "./sandbox-isolation.js";
import type { SandboxContainer } from "./vm/vm-container-view.js";

/** How long BuildKit may take to answer after the sandbox starts before waiting is logged. */
const QUIET_START_MS = 3000;

export type SandboxKind = "runc" | "vm";

export interface SandboxStatus {
  ready: boolean;
  kind?: SandboxKind;
  containerId?: string;
  imageId?: string;
  imageLoaded?: boolean;
  /** Milliseconds from start() to ready. */
  readyMs?: number;
  /** The VM's accelerator (vm only). */
  accel?: string;
}

/** What the daemon and the API need of a sandbox, whatever runs it (a runc container, a VM). */
export interface Sandbox {
  readonly kind: SandboxKind;
  readonly channelDir: string;
  /** The channel endpoint of buildkitd. */
  readonly buildkitAddr: string;
  /** The group through which channel sockets are shared with the sandbox. */
  readonly channelGroup: number;
  /** Where the daemon serves its egress proxy for the sandbox. */
  readonly egressSocket: string;
  /** Where the daemon serves its registry endpoint for the sandbox. */
  readonly registrySocket: string;
  readonly status: SandboxStatus;
  /** Set when the sandbox is not a runtime container: what `docker inspect/logs arca-buildkit` show. */
  readonly container?: SandboxContainer;
  prepareChannel(): Promise<void>;
  start(signal?: AbortSignal): Promise<ControlClient>;
  client(signal?: AbortSignal): Promise<ControlClient>;
  stop(opts?: { keepRunning?: boolean }): Promise<void>;
}

/** What every sandbox is configured with. */
export interface SandboxSettings {
  dataRoot: string;
  toolsBin: string;
  log?: (line: string) => void;
  /** Insecure registries and CA certificates, shared with BuildKit through buildkitd.toml. */
  registries?: RegistrySettings;
  /** buildkitd's egress proxy credential (`user:password`); without it buildkitd has no way out. */
  egressCredential?: string;
  gcKeepBytes?: number;
  /** Names one more local sandbox (pool backend): its own container, cache volume and channel dir. */
  instance?: string;
}

/**
 * The part every sandbox shares: the channel directory, its configuration and
 * the sandbox image made first; start() once (retried after a failure),
 * client() waiting for it.
 */
export abstract class SandboxLifecycle {
  readonly channelDir: string;
  #client: ControlClient | undefined;
  #ready: Promise<ControlClient> | undefined;
  #status: SandboxStatus = { ready: false };

  constructor(protected readonly settings: SandboxSettings) {
    const dir = settings.instance ? `sandbox-${settings.instance}` : "sandbox";
    this.channelDir = path.join(settings.dataRoot, "run", dir);
  }

  /** The group through which the channel directory is shared with the sandbox's root. */
  get channelGroup(): number {
    return SANDBOX_USERNS.hostId;
  }

  async prepareChannel(): Promise<void> {
    // Root's, group-shared with the sandbox's root (its user namespace); see shareChannel.
    await shareChannel(this.channelDir);
  }

  /** Writes the channel's configuration and assembles the sandbox image (reused while unchanged). */
  protected async prepare(signal?: AbortSignal): Promise<{ configChanged: boolean; image: SandboxImage }> {
    const s = this.settings;
    const configChanged = await writeChannelConfig({
      channelDir: this.channelDir,
      registryHost: SANDBOX_REGISTRY_HOST,
      registries: s.registries,
      egressCredential: s.egressCredential,
      gcKeepBytes: s.gcKeepBytes,
    });
    await this.prepareChannel();
    const image = await assembleSandboxImage({
      dataRoot: s.dataRoot,
      toolsBin: s.toolsBin,
      signal,
      onProgress: s.log ?? (() => {}),
    });
    return { configChanged, image };
  }

  get status(): SandboxStatus {
    return { ...this.#status };
  }

  /** Brings the sandbox up and returns a client whose BuildKit has a worker. */
  protected abstract bringUp(signal?: AbortSignal): Promise<{ client: ControlClient; status: SandboxStatus }>;

  start(signal?: AbortSignal): Promise<ControlClient> {
    this.#ready ??= this.bringUp(signal).then(
      ({ client, status }) => {
        this.#client = client;
        this.#status = status;
        return client;
      },
      (err: unknown) => {
        this.#ready = undefined;
        throw err;
      },
    );
    return this.#ready;
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

  /** Closes the client and forgets the started state. */
  protected reset(): void {
    this.#client?.close();
    this.#client = undefined;
    this.#ready = undefined;
    this.#status = { ready: false };
  }
}

/** A Control client to addr once BuildKit answers and has a worker (health, not just a socket). */
export async function connectBuildkit(
  addr: string,
  log: (line: string) => void,
  signal?: AbortSignal,
  attempts?: number,
): Promise<ControlClient> {
  const client = createControlClient(parseDialAddress(addr));
  // buildkitd takes about a second to listen: early refusals are expected, only a slow start is news.
  const quietUntil = Date.now() + QUIET_START_MS;
  try {
    await waitReady(client, {
      signal,
      ...(attempts ? { connectAttempts: attempts } : {}),
      onConnectAttempt: ({ attempt, attempts, error }) => {
        if (error && Date.now() > quietUntil)
          log(`waiting for BuildKit in the sandbox (attempt ${attempt}/${attempts}): ${error.message}`);
      },
    });
    const workers = await client.control.listWorkers({}, { signal });
    if (workers.record.length === 0) throw new Error("BuildKit in the sandbox has no worker");
    return client;
  } catch (err) {
    client.close();
    throw err;
  }
}
