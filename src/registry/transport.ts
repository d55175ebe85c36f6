import http, { type IncomingMessage, type OutgoingHttpHeaders } from "node:http";
import https from "node:https";
import type net from "node:net";
import type { Readable } from "node:stream";
import tls from "node:tls";
import { RegistryError } from "./errors.js";

/** Opens a TCP connection through the daemon's egress policy (EgressProxy.dialer). */
export type Dial = (host: string, port: number, signal?: AbortSignal) => Promise<net.Socket>;

export interface TlsOptions {
  ca?: Buffer;
  skipVerify?: boolean;
}

export interface RequestInit {
  method: string;
  headers?: OutgoingHttpHeaders;
  /** A buffer, or a stream sent with the Content-Length in headers (or chunked without one). */
  body?: Buffer | Readable;
  tls?: TlsOptions;
  signal?: AbortSignal;
  /** Follow 301/302/303/307/308 (blob downloads go to storage that way). */
  follow?: boolean;
}

const MAX_REDIRECTS = 5;

/**
 * HTTP/1.1 to registries over connections the egress dialer opened (TLS on
 * top of them here, with certs.d CAs), kept alive per endpoint. A request
 * that sees no bytes for idleTimeoutMs fails as unreachable.
 */
export class RegistryTransport {
  private readonly agents = new Map<string, http.Agent>();

  constructor(
    private readonly dial: Dial,
    private readonly idleTimeoutMs = 60_000,
  ) {}

  async request(url: URL, init: RequestInit): Promise<IncomingMessage> {
    let current = url;
    let headers = { ...init.headers };
    for (let hop = 0; ; hop++) {
      const res = await this.once(current, { ...init, headers });
      const status = res.statusCode ?? 0;
      const location = res.headers.location;
      if (!init.follow || ![301, 302, 303, 307, 308].includes(status) || !location) return res;
      res.resume();
      if (hop >= MAX_REDIRECTS) {
        throw new RegistryError(
          "unreachable",
          `${operation(init.method, url)}: stopped after ${MAX_REDIRECTS} redirects (last to ${location})`,
        );
      }
      const next = new URL(location, current);
      // Credentials are for the registry, not for the storage it sends us to.
      if (next.host !== current.host) {
        const { authorization: _drop, Authorization: _Drop, ...rest } = headers as Record<string, string>;
        headers = rest;
      }
      current = next;
    }
  }

  close(): void {
    for (const a of this.agents.values()) a.destroy();
    this.agents.clear();
  }

  private once(url: URL, init: RequestInit): Promise<IncomingMessage> {
    const secure = url.protocol === "https:";
    const port = Number(url.port) || (secure ? 443 : 80);
    const agent = this.agentFor(secure, url.hostname, port, init.tls);
    const what = operation(init.method, url);
    return new Promise((resolve, reject) => {
      const req = (secure ? https : http).request(url, {
        method: init.method,
        headers: init.headers,
        agent,
        ...(init.signal ? { signal: init.signal } : {}),
      });
      req.setTimeout(this.idleTimeoutMs, () =>
        req.destroy(
          new RegistryError(
            "unreachable",
            `${what}: no answer for ${Math.round(this.idleTimeoutMs / 1000)} s`,
          ),
        ),
      );
      req.once("error", (err) => reject(wrapNetError(what, err)));
      req.once("response", (res) => {
        // Later failures (a cut mid-body) reach the reader of the body with the same wording.
        res.once("error", () => {});
        resolve(res);
      });
      if (init.body === undefined) req.end();
      else if (Buffer.isBuffer(init.body)) req.end(init.body);
      else {
        init.body.once("error", (err) => req.destroy(err));
        init.body.pipe(req);
      }
    });
  }

  private agentFor(secure: boolean, host: string, port: number, t: TlsOptions = {}): http.Agent {
    const key = `${secure ? "s" : "p"}|${host}|${port}|${t.skipVerify ? 1 : 0}|${t.ca ? t.ca.length : 0}`;
    let agent = this.agents.get(key);
    if (agent) return agent;
    const dial = this.dial;
    const opts = { keepAlive: true, maxSockets: 8, scheduling: "lifo" as const };
    agent = secure ? new https.Agent(opts) : new http.Agent(opts);
    // Node's Agent waits for the callback when createConnection returns nothing.
    (agent as unknown as { createConnection: unknown }).createConnection = (
      _options: unknown,
      cb: (err: Error | null, sock?: net.Socket) => void,
    ) => {
      dial(host, port).then(
        (sock) => {
          if (!secure) return cb(null, sock);
          const servername = net_isIP(host) ? undefined : host;
          const tlsSock = tls.connect({
            socket: sock,
            ...(servername ? { servername } : {}),
            ...(t.ca ? { ca: [...tls.rootCertificates, t.ca.toString("utf8")] } : {}),
            rejectUnauthorized: !t.skipVerify,
            ALPNProtocols: ["http/1.1"],
          });
          cb(null, tlsSock);
        },
        (err) => cb(err as Error),
      );
      return undefined;
    };
    this.agents.set(key, agent);
    return agent;
  }
}

function net_isIP(host: string): boolean {
  return /^[\d.]+$/.test(host) || host.includes(":");
}

/** Socket-level failures as dockerd words them: the request, then the cause. */
export function wrapNetError(what: string, err: unknown): Error {
  if (err instanceof RegistryError) return err;
  const e = err as NodeJS.ErrnoException;
  if (e?.name === "AbortError") return e;
  // The egress layer's refusals (denied, unresolved) keep their own class and kind.
  if ((e as { code?: string })?.code && typeof (e as { kind?: unknown }).kind === "string") {
    return Object.assign(e, { message: `${what}: ${e.message}` });
  }
  const why = e?.code === "ECONNREFUSED" ? "connection refused" : (e?.message ?? String(err));
  return new RegistryError("unreachable", `${what}: ${why}`, { cause: err });
}

/** Reads a small body (manifests, errors, tokens); more than limit bytes fails. */
export async function readBody(res: IncomingMessage, limit: number, what: string): Promise<Buffer> {
  const declared = Number(res.headers["content-length"]);
  if (Number.isFinite(declared) && declared > limit) {
    res.destroy();
    throw new RegistryError("bad_content", `${what}: ${declared} bytes is over the ${limit}-byte limit`);
  }
  const chunks: Buffer[] = [];
  let size = 0;
  try {
    for await (const c of res) {
      size += (c as Buffer).length;
      if (size > limit) {
        res.destroy();
        throw new RegistryError("bad_content", `${what}: more than the ${limit}-byte limit`);
      }
      chunks.push(c as Buffer);
    }
  } catch (err) {
    throw wrapNetError(what, err);
  }
  return Buffer.concat(chunks);
}

/** `Get "https://host/v2/…"`, as Go's url.Error starts the messages dockerd prints. */
export function operation(method: string, url: URL): string {
  const m = method.charAt(0) + method.slice(1).toLowerCase();
  return `${m} "${url.origin}${url.pathname}${url.search}"`;
}
