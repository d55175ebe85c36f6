import type { BackendPool } from "../backends/index.js";
import type { EgressProxy } from "../egress/index.js";
import type { ImageStore, RegistryServer } from "../images/index.js";
import type { RegistryClient } from "../registry/index.js";
import type { Runtime } from "../runtime/index.js";
import type { Sandbox } from "../sandbox/index.js";
import type { EventBus } from "./events.js";

/** What the routes work with; the daemon builds one and passes it to createApiRouter. */
export interface ApiDeps {
  dataRoot: string;
  store: ImageStore;
  runtime: Runtime;
  /** The built-in sandbox (`docker inspect/logs/exec arca-buildkit`, `docker info`). */
  buildkit: Sandbox;
  /** Where builds run: the built-in sandbox and any other backends, with routing and health. */
  pool: BackendPool;
  /** Registry host as buildkitd in the sandbox reaches Arca's registry endpoint. */
  registryHost: string;
  /** Builds register the names their exporter pushes; the endpoint refuses every other push. */
  allowPush: RegistryServer["allowPush"];
  events: EventBus;
  /** Most bytes a POST /build context may take once decompressed. */
  maxContextSize?: number;
  /** The daemon's egress proxy (the sandbox's only way out); RUN steps get a credential per build. */
  egress?: EgressProxy;
  /** docker pull, push and login, through the egress policy. */
  registry?: RegistryClient;
  buildkitVersion: string;
  daemonName: string;
  log: (line: string) => void;
}
