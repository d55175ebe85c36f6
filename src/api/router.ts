import type { IncomingMessage, ServerResponse } from "node:http";
import type { Duplex } from "node:stream";

/** What a route handler gets: the request, parsed path params and query, and a signal for client disconnects. */
export interface RequestContext {
  req: IncomingMessage;
  res: ServerResponse;
  params: Record<string, string>;
  query: URLSearchParams;
  /** Negotiated API version, e.g. "1.51" (the path's /vX.Y prefix, or the default). */
  apiVersion: string;
  /** Aborts when the client goes away (listened on the response, see nodejs/node#40775). */
  signal: AbortSignal;
}

export type Handler = (ctx: RequestContext) => Promise<void> | void;

/** Hijacked connections (exec start, /grpc, /session): the handler owns the socket. */
export interface UpgradeContext {
  req: IncomingMessage;
  socket: Duplex;
  head: Buffer;
  params: Record<string, string>;
  query: URLSearchParams;
  apiVersion: string;
}
export type UpgradeHandler = (ctx: UpgradeContext) => Promise<void> | void;

interface Route<H> {
  method: string;
  re: RegExp;
  names: string[];
  handler: H;
}

/**
 * Path patterns like `/images/{name*}/json`: `{x}` matches one segment,
 * `{x*}` any run of characters including slashes (image names such as
 * `ghcr.io/org/app:1`), as dockerd's `{name:.*}` routes do.
 */
function compile(pattern: string): { re: RegExp; names: string[] } {
  const names: string[] = [];
  const src = pattern
    .replace(/[.+?^$()|[\]\\]/g, "\\$&")
    .replace(/\{(\w+)(\*?)\}/g, (_m, name: string, star) => {
      names.push(name);
      return star ? "(.+)" : "([^/]+)";
    });
  return { re: new RegExp(`^${src}$`), names };
}

export class Router {
  readonly #routes: Route<Handler>[] = [];
  readonly #upgrades: Route<UpgradeHandler>[] = [];

  add(method: string, pattern: string, handler: Handler): this {
    this.#routes.push({ method, ...compile(pattern), handler });
    return this;
  }

  upgrade(method: string, pattern: string, handler: UpgradeHandler): this {
    this.#upgrades.push({ method, ...compile(pattern), handler });
    return this;
  }

  match(method: string, path: string) {
    return find(this.#routes, method, path);
  }

  matchUpgrade(method: string, path: string) {
    return find(this.#upgrades, method, path);
  }
}

function find<H>(
  routes: Route<H>[],
  method: string,
  path: string,
): { handler: H; params: Record<string, string> } | { methodNotAllowed: true } | undefined {
  let pathMatched = false;
  for (const r of routes) {
    const m = r.re.exec(path);
    if (!m) continue;
    pathMatched = true;
    if (r.method !== method && !(method === "HEAD" && r.method === "GET")) continue;
    const params: Record<string, string> = {};
    r.names.forEach((n, i) => {
      params[n] = decodeURIComponent(m[i + 1] as string);
    });
    return { handler: r.handler, params };
  }
  return pathMatched ? { methodNotAllowed: true } : undefined;
}
