import type { IncomingMessage, OutgoingHttpHeaders } from "node:http";
import type { Readable } from "node:stream";
import type { Authorizer } from "./auth.js";
import { RegistryError } from "./errors.js";
import { throwStatus } from "./status-error.js";
import type { RegistryTransport } from "./transport.js";

export interface SendOptions {
  headers?: OutgoingHttpHeaders;
  /** A stream body cannot be sent twice: a 401 on it is final (callers authorize first). */
  body?: Buffer | Readable;
  follow?: boolean;
  /** Other repositories the request reads (a cross-repository mount's source). */
  extraScopes?: string[];
  /** Statuses handed back to the caller instead of thrown. */
  accept?: number[];
}

/**
 * One repository on one endpoint: every request carries the authorization
 * for the repository's scope and is retried once after a 401 with a fresh
 * token; statuses the caller did not expect become dockerd-worded errors.
 */
export class RepositoryClient {
  constructor(
    readonly transport: RegistryTransport,
    readonly auth: Authorizer,
    /** The repository's path on the endpoint, e.g. `library/busybox`. */
    readonly path: string,
    /** `pull` or `pull,push`. */
    readonly actions: string,
    readonly signal?: AbortSignal,
  ) {}

  url(sub: string): URL {
    return new URL(`/v2/${this.path}/${sub}`, this.auth.endpoint.base);
  }

  scopes(extra: string[] = []): string[] {
    return [`repository:${this.path}:${this.actions}`, ...extra];
  }

  async send(method: string, target: URL | string, opts: SendOptions = {}): Promise<IncomingMessage> {
    const url = typeof target === "string" ? this.url(target) : target;
    const ep = this.auth.endpoint;
    for (let attempt = 0; ; attempt++) {
      const headers = { ...opts.headers, ...(await this.auth.header(this.scopes(opts.extraScopes))) };
      const res = await this.transport.request(url, {
        method,
        headers,
        ...(opts.body !== undefined ? { body: opts.body } : {}),
        tls: { ...(ep.ca ? { ca: ep.ca } : {}), skipVerify: !!ep.skipVerify },
        follow: opts.follow ?? false,
        ...(this.signal ? { signal: this.signal } : {}),
      });
      const status = res.statusCode ?? 0;
      const retryable = opts.body === undefined || Buffer.isBuffer(opts.body);
      if (status === 401 && attempt === 0 && retryable) {
        res.resume();
        this.auth.invalidate(res);
        continue;
      }
      if ((status >= 200 && status < 300) || opts.accept?.includes(status)) return res;
      if (method === "HEAD") {
        res.resume();
        throw new RegistryError(
          status === 401 ? "unauthorized" : status === 404 ? "not_found" : "unreachable",
          `${method[0]}${method.slice(1).toLowerCase()} "${url.href}": ${status} ${res.statusMessage ?? ""}`.trim(),
        );
      }
      return throwStatus(res, method, url);
    }
  }
}
