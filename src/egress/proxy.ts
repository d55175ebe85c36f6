import http from "node:http";
import type net from "node:net";
import { listen } from "../transport/index.js";
import type { ProxyContext } from "./admit.js";
import { AuditLog } from "./audit-log.js";
import type { EgressAuditRecord } from "./audit-record.js";
import { CredentialTable, type EgressClient, type EgressCredential } from "./credentials.js";
import { dialEgress, type EgressDial } from "./dial.js";
import { handleForward } from "./forward.js";
import { HostLoopbackGrants } from "./host-loopback.js";
import type { EgressPolicy } from "./policy.js";
import { type EgressSummary, SummaryTable } from "./summary.js";
import { handleConnect } from "./tunnel.js";

export interface EgressProxyOptions {
  policy: EgressPolicy;
  /** The append-only JSONL audit log (`<data root>/egress.log`). */
  auditLogPath: string;
  log?: (line: string) => void;
  /** This host's addresses (refused unless named); default: the interfaces' addresses. */
  ownAddresses?: () => string[];
  /** Bound on connecting to an upstream; default 10 s. */
  dialTimeoutMs?: number;
  /** Bound on a client sending a complete request head; default 30 s. */
  headersTimeoutMs?: number;
  /** Bound on a plain-HTTP upstream starting its response; default 60 s. */
  responseTimeoutMs?: number;
  /**
   * Bound on a connection where no byte moves either way (a CONNECT tunnel
   * whose upstream never answers or stalls; a plain response whose body
   * stalls); default 60 s, 0: none.
   */
  idleTimeoutMs?: number;
  /** Largest request head accepted (431 above); default 16 KiB. */
  maxHeaderSize?: number;
  /** Mode of the unix socket; default 0o660, as the channel's other sockets. */
  socketMode?: number;
}

/**
 * The daemon's one door out: an HTTP proxy (CONNECT tunnels, absolute-form
 * plain HTTP) that authenticates each build's credential, resolves names
 * itself, applies the egress policy and audits every request.
 */
export class EgressProxy {
  private policy: EgressPolicy;
  private readonly credentials = new CredentialTable();
  private readonly summaries = new SummaryTable();
  private readonly hostLoopback = new HostLoopbackGrants();
  private readonly listeners = new Set<(r: EgressAuditRecord) => void>();
  private readonly audit: AuditLog;
  private auditOpened: Promise<void> | undefined;
  private readonly servers: http.Server[] = [];
  private readonly tunnels = new Set<net.Socket>();
  private readonly ctx: ProxyContext;
  private readonly log: (line: string) => void;

  constructor(private readonly opts: EgressProxyOptions) {
    this.policy = opts.policy;
    this.log = opts.log ?? (() => {});
    this.audit = new AuditLog(opts.auditLogPath, this.log);
    this.ctx = {
      policy: () => this.policy,
      hostLoopback: this.hostLoopback,
      credentials: this.credentials,
      ...(opts.ownAddresses ? { ownAddresses: opts.ownAddresses } : {}),
      dialTimeoutMs: opts.dialTimeoutMs ?? 10_000,
      responseTimeoutMs: opts.responseTimeoutMs ?? 60_000,
      idleTimeoutMs: opts.idleTimeoutMs ?? 60_000,
      record: (r) => this.record(r),
    };
  }

  /** The policy in force. */
  get currentPolicy(): EgressPolicy {
    return this.policy;
  }

  /** Serves the proxy on a unix socket (the sandbox's egress listener forwards to it). */
  async listen(socketPath: string, opts: { sharedGroup?: number } = {}): Promise<void> {
    const server = await this.createServer();
    await listen(`unix://${socketPath}`, server, { ...opts, socketMode: this.opts.socketMode ?? 0o660 });
    this.servers.push(server);
  }

  /** Serves the proxy on TCP (tests, benches). */
  async listenTcp(host: string, port: number): Promise<{ port: number }> {
    const server = await this.createServer();
    const bound = await listen(`tcp://${host.includes(":") ? `[${host}]` : host}:${port}`, server);
    this.servers.push(server);
    return { port: Number(bound.slice(bound.lastIndexOf(":") + 1)) };
  }

  /** A fresh random credential for a client; requests with it are attributed to the client until release(). */
  register(client: EgressClient, password?: string): EgressCredential {
    return this.credentials.register(client, password);
  }

  /**
   * Lets buildkitd reach the host's loopback `port` under HOST_LOOPBACK_NAME
   * (a build pushing to `localhost:port`) until the returned function runs.
   */
  allowHostLoopback(port: number): () => void {
    return this.hostLoopback.allow(port);
  }

  /**
   * A dialer for the daemon's own traffic (`daemon:pull`, `daemon:push`):
   * each connection is admitted, resolved and audited as a proxy request of
   * that client would be; a refusal throws an EgressError naming the policy.
   */
  dialer(clientId: string): EgressDial {
    const client: EgressClient = { id: clientId, kind: "daemon", tags: [] };
    return async (host, port, signal) => {
      this.auditOpened ??= this.audit.open();
      await this.auditOpened;
      const sock = await dialEgress(this.ctx, client, host, port, signal);
      this.tunnels.add(sock);
      sock.once("close", () => this.tunnels.delete(sock));
      return sock;
    };
  }

  /** Totals of a client's requests so far (kept after release, for the closing line of a build). */
  summary(clientId: string): EgressSummary {
    return this.summaries.get(clientId);
  }

  /** Every audit record as it is written; returns the unsubscribe function. */
  onRecord(listener: (r: EgressAuditRecord) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Replaces the policy for new requests (open tunnels keep going). */
  setPolicy(policy: EgressPolicy): void {
    this.policy = policy;
  }

  async close(): Promise<void> {
    for (const s of this.servers) {
      s.close();
      s.closeAllConnections();
    }
    for (const t of this.tunnels) t.destroy();
    this.servers.length = 0;
    await this.audit.close();
  }

  private record(r: EgressAuditRecord): void {
    this.audit.append(r);
    if (r.client !== "unauthenticated") this.summaries.add(r);
    for (const l of this.listeners) {
      try {
        l(r);
      } catch (err) {
        this.log(`egress: record listener failed: ${(err as Error).message}`);
      }
    }
  }

  private async createServer(): Promise<http.Server> {
    this.auditOpened ??= this.audit.open();
    await this.auditOpened;
    const headersTimeout = this.opts.headersTimeoutMs ?? 30_000;
    const server = http.createServer({
      maxHeaderSize: this.opts.maxHeaderSize ?? 16 * 1024,
      headersTimeout,
      // Bodies (pushes, uploads) may take as long as they take; only the head is bounded.
      requestTimeout: 0,
      connectionsCheckingInterval: Math.min(1000, headersTimeout),
      noDelay: true,
    });
    // Node bounds a request head only once its first byte arrives: a connection
    // that sends nothing is bounded here (Node's own timeout handler destroys it).
    server.on("connection", (socket: net.Socket) => socket.setTimeout(headersTimeout));
    server.on("request", (req, res) => {
      req.socket.setTimeout(0);
      handleForward(this.ctx, req, res).catch((err) => this.internal(err, () => res.destroy()));
    });
    server.on("connect", (req, duplex, head) => {
      const socket = duplex as net.Socket;
      socket.setTimeout(0);
      handleConnect(this.ctx, req, socket, head, this.tunnels).catch((err) =>
        this.internal(err, () => socket.destroy()),
      );
    });
    return server;
  }

  private internal(err: unknown, drop: () => void): void {
    this.log(`egress: internal error: ${(err as Error).stack ?? String(err)}`);
    drop();
  }
}
