import { type ControlClient, createControlClient } from "../buildkit/index.js";
import type { Sandbox } from "../sandbox/index.js";
import { parseDialAddress } from "../transport/index.js";
import type { BackendSpec } from "./backend-config.js";

export const REMOTE_PUSH_SCOPE = "remote-backends";

/** One BuildKit the pool can send builds to, whatever runs it. */
export interface BackendTarget {
  readonly spec: BackendSpec;
  readonly kind: "sandbox" | "remote";
  /** Arca's registry endpoint as this buildkitd reaches it (images come home through it). */
  readonly registryHost: string;
  /** RUN steps of this backend reach the daemon's egress listener (the sandbox's step network). */
  readonly stepEgress: boolean;
  /** The registry listener this backend pushes through; builds' push grants are good only there. */
  readonly pushScope: string;
  /** The sandbox's guarantees this backend lacks, for `docker info` and `arca backend ls`. */
  readonly lacks: readonly string[];
  /** Set for local sandboxes. */
  readonly sandbox?: Sandbox;
  /** Brings the backend up (a sandbox starts; a remote one is only dialled when used). */
  start(signal: AbortSignal): Promise<void>;
  /** The Control client; waits (bounded by the signal) while a sandbox starts. */
  client(signal?: AbortSignal): Promise<ControlClient>;
  stop(): Promise<void>;
}

/** A local sandbox (runc container or VM) as a backend. */
export class SandboxTarget implements BackendTarget {
  readonly kind = "sandbox";
  readonly stepEgress = true;
  readonly lacks: readonly string[] = [];
  readonly pushScope: string;

  constructor(
    readonly spec: BackendSpec,
    readonly sandbox: Sandbox,
    readonly registryHost: string,
  ) {
    this.pushScope = spec.name;
  }

  async start(signal: AbortSignal): Promise<void> {
    await this.sandbox.start(signal);
  }

  client(signal?: AbortSignal): Promise<ControlClient> {
    return this.sandbox.client(signal);
  }

  stop(): Promise<void> {
    return this.sandbox.stop();
  }
}

/**
 * A buildkitd Arca does not run (tcp:// with mutual TLS, unix://, vsock-uds://). It has its own
 * network: Arca cannot hold its RUN steps or its registry traffic to the egress policy.
 */
export class RemoteTarget implements BackendTarget {
  readonly kind = "remote";
  readonly stepEgress = false;
  /** Every remote backend pushes through the one mutual-TLS listener. */
  readonly pushScope = REMOTE_PUSH_SCOPE;
  readonly lacks: readonly string[] = [
    "no network isolation (the backend's own network)",
    "RUN steps and base-image pulls bypass the egress policy and audit log",
  ];
  readonly registryHost: string;
  readonly #client: ControlClient;

  constructor(readonly spec: BackendSpec) {
    this.registryHost = spec.registry ?? "";
    this.#client = createControlClient(parseDialAddress(spec.address, spec.tls ? { tls: spec.tls } : {}));
  }

  async start(): Promise<void> {}

  async client(): Promise<ControlClient> {
    return this.#client;
  }

  async stop(): Promise<void> {
    this.#client.close();
  }
}
