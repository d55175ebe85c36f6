import path from "node:path";
import type { ImageStore } from "../images/index.js";
import { BlobSources } from "./blob-sources.js";
import type { RegistryCredentials } from "./credentials.js";
import { login } from "./login.js";
import { type PullRequest, type PullResult, pull } from "./pull.js";
import { type PushRequest, type PushResult, push } from "./push.js";
import { PushLayerCache } from "./push-layer-cache.js";
import type { RegistrySettings } from "./settings.js";
import { type Dial, RegistryTransport } from "./transport.js";

export interface RegistryClientOptions {
  store: ImageStore;
  settings: RegistrySettings;
  /** Dialers through the egress policy, one per audited client (`daemon:pull`, `daemon:push`). */
  dial: { pull: Dial; push: Dial };
  /** Where the client keeps its own state (blob sources, compressed layers for pushes). */
  stateDir: string;
  /** A request that sees no bytes this long fails; default 60 s. */
  idleTimeoutMs?: number;
}

/** The daemon's registry client: docker pull, push and login. */
export class RegistryClient {
  private readonly sources: BlobSources;
  private readonly layers: PushLayerCache;

  constructor(private readonly opts: RegistryClientOptions) {
    this.sources = new BlobSources(path.join(opts.stateDir, "sources"));
    this.layers = new PushLayerCache(path.join(opts.stateDir, "compressed"));
  }

  async pull(req: PullRequest): Promise<PullResult> {
    const transport = new RegistryTransport(this.opts.dial.pull, this.opts.idleTimeoutMs);
    try {
      return await pull(
        { store: this.opts.store, transport, settings: this.opts.settings, sources: this.sources },
        req,
      );
    } finally {
      transport.close();
    }
  }

  async push(req: PushRequest): Promise<PushResult> {
    const transport = new RegistryTransport(this.opts.dial.push, this.opts.idleTimeoutMs);
    try {
      return await push(
        {
          store: this.opts.store,
          transport,
          settings: this.opts.settings,
          sources: this.sources,
          layers: this.layers,
        },
        req,
      );
    } finally {
      transport.close();
    }
  }

  async login(creds: RegistryCredentials, signal?: AbortSignal): Promise<{ identityToken?: string }> {
    const transport = new RegistryTransport(this.opts.dial.pull, this.opts.idleTimeoutMs);
    try {
      return await login(transport, this.opts.settings, creds, signal);
    } finally {
      transport.close();
    }
  }
}
