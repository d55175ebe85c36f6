import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { createServer as createTlsServer } from "node:https";
import { pipeline } from "node:stream/promises";
import { type ListenOptions, listen } from "../../transport/index.js";
import { type Digest, digestOf, isDigest } from "../digest.js";
import { ImageError } from "../errors.js";
import type { ImageStore } from "../image-store.js";
import { MANIFEST_SIZE_LIMIT } from "../manifest.js";
import { isValidTag } from "../reference.js";
import { storeRepository } from "./name-mapping.js";
import { type RegistryContext, RegistryHttpError, toRegistryError } from "./oci-errors.js";
import { type PushGrant, PushGrants } from "./push-grants.js";

export interface RegistryServerOptions {
  /** One line per request (method, path, status) and per internal error. */
  log?: (line: string) => void;
}

export interface RegistryServer {
  /** Listens on `unix:///path` or `tcp://host:port` (port 0 picks one); resolves with the bound address. */
  /** `opts.sharedGroup`: the channel directory is shared with the sandbox's root through this gid. */
  listen(address: string, opts?: ListenOptions & { tls?: RegistryTls; scope?: string }): Promise<string>;
  /**
   * Accepts pushes (blob uploads, manifests, tags) for these image names until the grant is released or
   * the signal aborts; everything else is refused with DENIED. Builds register their exporter's names here.
   */
  allowPush(names: string[], signal?: AbortSignal, scope?: string): PushGrant;
  /** Stops every listener and drops open connections. */
  close(): Promise<void>;
}

/** PEM contents for a TCP listener: always mutual TLS (clients present a certificate signed by `ca`). */
export interface RegistryTls {
  cert: Buffer;
  key: Buffer;
  ca: Buffer;
}

interface Ctx {
  req: IncomingMessage;
  res: ServerResponse;
  url: URL;
  /** Repository path as requested (used in Location headers). */
  name: string;
  /** Store repository, e.g. docker.io/library/busybox. */
  repo: string;
  signal: AbortSignal;
  grants: PushGrants;
  /** The listener's scope: pushes need a grant made for it (see PushGrants). */
  scope?: string | undefined;
}

const API_VERSION_HEADER = { "Docker-Distribution-Api-Version": "registry/2.0" };

/** OCI Distribution API over the image store: what buildkitd in the sandbox pulls from and pushes to. */
export function createRegistryServer(store: ImageStore, opts: RegistryServerOptions = {}): RegistryServer {
  const servers: Server[] = [];
  const grants = new PushGrants();
  const handlerFor = (scope?: string) => (req: IncomingMessage, res: ServerResponse) => {
    // The response's close (not the request's) tells a disconnect from a fully read body (nodejs/node#40775).
    const ac = new AbortController();
    res.on("close", () => {
      if (!res.writableFinished) ac.abort(new Error("client disconnected"));
    });
    handle(store, grants, req, res, ac.signal, scope)
      .catch((err: unknown) => {
        const ctx: RegistryContext = (err as { registryContext?: RegistryContext }).registryContext ?? "blob";
        const e = toRegistryError(err, ctx);
        if (e.status >= 500)
          opts.log?.(`registry: ${req.method} ${req.url}: ${(err as Error)?.stack ?? err}`);
        sendError(req, res, e);
      })
      .finally(() => opts.log?.(`registry: ${req.method} ${req.url} -> ${res.statusCode}`));
  };
  return {
    async listen(
      address: string,
      opts?: ListenOptions & { tls?: RegistryTls; scope?: string },
    ): Promise<string> {
      const tls = opts?.tls;
      const handler = handlerFor(opts?.scope);
      // Remote backends reach the store over the network: only with a client certificate of the pool's CA.
      const server = tls
        ? createTlsServer(
            { ...tls, requestCert: true, rejectUnauthorized: true, keepAliveTimeout: 30_000 },
            handler,
          )
        : createServer({ keepAliveTimeout: 30_000 }, handler);
      const bound = await listen(address, server, opts);
      servers.push(server);
      return bound;
    },
    allowPush: (names, signal, scope) => grants.allow(names, signal, scope),
    async close(): Promise<void> {
      await Promise.all(
        servers.splice(0).map(
          (s) =>
            new Promise<void>((resolve) => {
              s.close(() => resolve());
              s.closeAllConnections();
            }),
        ),
      );
    },
  };
}

const ROUTES: { re: RegExp; kind: "manifest" | "uploads" | "upload" | "blob" | "tags" }[] = [
  { re: /^\/v2\/(.+)\/manifests\/([^/]+)$/, kind: "manifest" },
  { re: /^\/v2\/(.+)\/blobs\/uploads\/?$/, kind: "uploads" },
  { re: /^\/v2\/(.+)\/blobs\/uploads\/([^/]+)$/, kind: "upload" },
  { re: /^\/v2\/(.+)\/blobs\/([^/]+)$/, kind: "blob" },
  { re: /^\/v2\/(.+)\/tags\/list$/, kind: "tags" },
];

async function handle(
  store: ImageStore,
  grants: PushGrants,
  req: IncomingMessage,
  res: ServerResponse,
  signal: AbortSignal,
  scope?: string,
) {
  const url = new URL(req.url ?? "/", "http://registry");
  const method = req.method ?? "GET";
  if (url.pathname === "/v2/" || url.pathname === "/v2") {
    if (method !== "GET" && method !== "HEAD") throw unsupported(method);
    return sendJson(req, res, 200, {});
  }
  for (const { re, kind } of ROUTES) {
    const m = re.exec(url.pathname);
    if (!m) continue;
    const name = decodeURIComponent(m[1] as string);
    const arg = m[2] === undefined ? undefined : decodeURIComponent(m[2]);
    let repo: string;
    try {
      repo = storeRepository(name, url.searchParams.get("ns"));
    } catch (err) {
      throw new RegistryHttpError(400, "NAME_INVALID", (err as Error).message);
    }
    const ctx: Ctx = { req, res, url, name, repo, signal, grants, scope };
    if (kind === "uploads" || kind === "upload") requirePush(ctx);
    switch (kind) {
      case "manifest":
        if (method === "GET" || method === "HEAD")
          return inContext("manifest-get", getManifest(store, ctx, arg as string));
        if (method === "PUT") return inContext("manifest-put", putManifest(store, ctx, arg as string));
        throw unsupported(method);
      case "blob":
        if (method === "GET" || method === "HEAD")
          return inContext("blob", getBlob(store, ctx, arg as string));
        throw unsupported(method);
      case "uploads":
        if (method === "POST") return inContext("upload", startUpload(store, ctx));
        throw unsupported(method);
      case "upload":
        return inContext("upload", upload(store, ctx, method, arg as string));
      case "tags":
        if (method === "GET" || method === "HEAD") return listTags(store, ctx);
        throw unsupported(method);
    }
  }
  throw new RegistryHttpError(404, "UNSUPPORTED", `no route for ${method} ${url.pathname}`);
}

async function inContext(ctx: RegistryContext, p: Promise<void>): Promise<void> {
  try {
    await p;
  } catch (err) {
    if (err && typeof err === "object") (err as { registryContext?: RegistryContext }).registryContext = ctx;
    throw err;
  }
}

/** Writes go only to repositories of builds in flight (see PushGrants). */
function requirePush(c: Ctx, tag?: string): void {
  const ok = tag === undefined ? c.grants.mayPushTo(c.repo, c.scope) : c.grants.mayTag(c.repo, tag, c.scope);
  if (ok) return;
  c.req.resume();
  const what = tag === undefined ? c.repo : `${c.repo}:${tag}`;
  throw new RegistryHttpError(403, "DENIED", `push to ${what} denied: no build in flight exports it`);
}

function unsupported(method: string): RegistryHttpError {
  return new RegistryHttpError(405, "UNSUPPORTED", `${method} is not supported here`);
}

async function getManifest(store: ImageStore, c: Ctx, ref: string): Promise<void> {
  let digest: Digest | undefined;
  if (ref.startsWith("sha256:") || ref.includes(":")) {
    if (!isDigest(ref)) throw new RegistryHttpError(400, "DIGEST_INVALID", `invalid digest ${ref}`);
    digest = ref;
  } else {
    if (!isValidTag(ref)) throw new RegistryHttpError(400, "TAG_INVALID", `invalid tag ${ref}`);
    digest = store.lookupName(`${c.repo}:${ref}`);
  }
  const row = digest ? store.getManifest(digest) : undefined;
  const size = digest ? (await store.content.stat(digest))?.size : undefined;
  if (!digest || !row || size === undefined) {
    throw new RegistryHttpError(404, "MANIFEST_UNKNOWN", `manifest unknown: ${c.repo}:${ref}`);
  }
  c.res.writeHead(200, {
    ...API_VERSION_HEADER,
    "Content-Type": row.mediaType,
    "Content-Length": String(size),
    "Docker-Content-Digest": digest,
    ETag: `"${digest}"`,
  });
  if (c.req.method === "HEAD") return void c.res.end();
  await pipeline(store.content.createReadStream(digest), c.res, { signal: c.signal });
}

async function putManifest(store: ImageStore, c: Ctx, ref: string): Promise<void> {
  const isDigestRef = ref.includes(":");
  if (isDigestRef && !isDigest(ref))
    throw new RegistryHttpError(400, "DIGEST_INVALID", `invalid digest ${ref}`);
  if (!isDigestRef && !isValidTag(ref)) throw new RegistryHttpError(400, "TAG_INVALID", `invalid tag ${ref}`);
  requirePush(c, isDigestRef ? undefined : ref);
  const body = await readBody(c.req, MANIFEST_SIZE_LIMIT);
  const digest = digestOf(body);
  if (isDigestRef && digest !== ref) {
    throw new RegistryHttpError(400, "DIGEST_INVALID", `manifest digest ${digest} does not match ${ref}`);
  }
  const contentType = c.req.headers["content-type"]?.split(";")[0]?.trim();
  const stored = await store.putManifest(body, contentType, { signal: c.signal });
  // A tag must name an image the Engine API can list and remove (not e.g. a manifest whose config is null).
  if (!isDigestRef && !stored.imageId) {
    throw new RegistryHttpError(
      400,
      "MANIFEST_INVALID",
      `manifest ${digest} describes no image: cannot tag it`,
    );
  }
  if (!isDigestRef) store.setName(`${c.repo}:${ref}`, digest, "push");
  c.res.writeHead(201, {
    ...API_VERSION_HEADER,
    Location: `/v2/${c.name}/manifests/${digest}`,
    "Docker-Content-Digest": digest,
    "Content-Length": "0",
  });
  c.res.end();
}

async function getBlob(store: ImageStore, c: Ctx, ref: string): Promise<void> {
  if (!isDigest(ref)) throw new RegistryHttpError(400, "DIGEST_INVALID", `invalid digest ${ref}`);
  const st = await store.content.stat(ref);
  if (!st) throw new RegistryHttpError(404, "BLOB_UNKNOWN", `blob unknown: ${ref}`);
  const headers: Record<string, string> = {
    ...API_VERSION_HEADER,
    "Content-Type": "application/octet-stream",
    "Docker-Content-Digest": ref,
    "Accept-Ranges": "bytes",
    ETag: `"${ref}"`,
  };
  const range = parseRange(c.req.headers.range, st.size);
  if (range === "invalid") {
    throw new RegistryHttpError(416, "BLOB_UNKNOWN", "requested range not satisfiable", {
      "Content-Range": `bytes */${st.size}`,
    });
  }
  const status = range ? 206 : 200;
  const start = range?.start ?? 0;
  const end = range?.end ?? st.size - 1;
  if (range) headers["Content-Range"] = `bytes ${start}-${end}/${st.size}`;
  headers["Content-Length"] = String(Math.max(0, end - start + 1));
  c.res.writeHead(status, headers);
  if (c.req.method === "HEAD" || st.size === 0) return void c.res.end();
  await pipeline(store.content.createReadStream(ref, { start, end }), c.res, { signal: c.signal });
}

/** Single `bytes=a-b`, `bytes=a-` or `bytes=-n` range; multi-range requests get the whole blob. */
function parseRange(
  header: string | undefined,
  size: number,
): { start: number; end: number } | "invalid" | undefined {
  if (!header) return undefined;
  const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!m) return undefined;
  const [, a, b] = m as unknown as [string, string, string];
  let start: number;
  let end: number;
  if (a === "") {
    if (b === "") return "invalid";
    start = Math.max(0, size - Number(b));
    end = size - 1;
  } else {
    start = Number(a);
    end = b === "" ? size - 1 : Math.min(Number(b), size - 1);
  }
  if (start >= size || start > end) return "invalid";
  return { start, end };
}

async function startUpload(store: ImageStore, c: Ctx): Promise<void> {
  const q = c.url.searchParams;
  const mount = q.get("mount");
  if (mount !== null) {
    if (!isDigest(mount)) throw new RegistryHttpError(400, "DIGEST_INVALID", `invalid digest ${mount}`);
    if (await store.content.has(mount)) {
      c.req.resume();
      return blobCreated(c, mount);
    }
  }
  const digest = q.get("digest");
  if (digest !== null && mount === null) {
    if (!isDigest(digest)) throw new RegistryHttpError(400, "DIGEST_INVALID", `invalid digest ${digest}`);
    const length = contentLength(c.req);
    await store.content.ingest(c.req, { expectedDigest: digest, expectedSize: length, signal: c.signal });
    return blobCreated(c, digest);
  }
  c.req.resume();
  const id = await store.content.startUpload();
  uploadAccepted(c, id, 0, 202);
}

async function upload(store: ImageStore, c: Ctx, method: string, id: string): Promise<void> {
  switch (method) {
    case "GET": {
      const size = await store.content.uploadSize(id);
      return uploadAccepted(c, id, size, 204);
    }
    case "PATCH": {
      const offset = parseContentRange(c.req.headers["content-range"]);
      const current = await store.content.uploadSize(id);
      if (offset !== undefined && offset !== current) {
        c.req.resume();
        throw new RegistryHttpError(
          416,
          "BLOB_UPLOAD_INVALID",
          `upload is at offset ${current}, not ${offset}`,
          {
            Location: uploadLocation(c, id),
            Range: rangeHeader(current),
            "Docker-Upload-UUID": id,
          },
        );
      }
      const size = await store.content.appendUpload(id, c.req, { offset: current, signal: c.signal });
      return uploadAccepted(c, id, size, 202);
    }
    case "PUT": {
      const digest = c.url.searchParams.get("digest");
      if (digest === null || !isDigest(digest)) {
        c.req.resume();
        throw new RegistryHttpError(400, "DIGEST_INVALID", `PUT needs a valid ?digest=, got ${digest}`);
      }
      if (contentLength(c.req) !== 0) {
        const offset = parseContentRange(c.req.headers["content-range"]);
        await store.content.appendUpload(id, c.req, { offset, signal: c.signal });
      } else {
        await store.content.uploadSize(id);
      }
      try {
        await store.content.commitUpload(id, digest, c.signal);
      } catch (err) {
        if (err instanceof ImageError && (err.code === "digest_mismatch" || err.code === "size_mismatch")) {
          await store.content.abortUpload(id).catch(() => {});
        }
        throw err;
      }
      return blobCreated(c, digest);
    }
    case "DELETE":
      c.req.resume();
      await store.content.abortUpload(id);
      c.res.writeHead(204, { ...API_VERSION_HEADER });
      c.res.end();
      return;
    default:
      throw unsupported(method);
  }
}

function uploadLocation(c: Ctx, id: string): string {
  return `/v2/${c.name}/blobs/uploads/${id}`;
}

/** Range of bytes received so far, as distribution writes it (`0-0` for an empty upload). */
function rangeHeader(size: number): string {
  return `0-${Math.max(0, size - 1)}`;
}

function uploadAccepted(c: Ctx, id: string, size: number, status: number): void {
  c.res.writeHead(status, {
    ...API_VERSION_HEADER,
    Location: uploadLocation(c, id),
    Range: rangeHeader(size),
    "Docker-Upload-UUID": id,
    "Content-Length": "0",
  });
  c.res.end();
}

function blobCreated(c: Ctx, digest: string): void {
  c.res.writeHead(201, {
    ...API_VERSION_HEADER,
    Location: `/v2/${c.name}/blobs/${digest}`,
    "Docker-Content-Digest": digest,
    "Content-Length": "0",
  });
  c.res.end();
}

/** `Content-Range: <start>-<end>` (the spec's form; `bytes ` prefix tolerated); returns start. */
function parseContentRange(header: string | undefined): number | undefined {
  if (!header) return undefined;
  const m = /^(?:bytes[ =])?(\d+)-(\d+)(?:\/\S+)?$/.exec(header.trim());
  if (!m) throw new RegistryHttpError(416, "BLOB_UPLOAD_INVALID", `invalid Content-Range ${header}`);
  return Number(m[1]);
}

function contentLength(req: IncomingMessage): number | undefined {
  const v = req.headers["content-length"];
  if (v === undefined) return req.headers["transfer-encoding"] ? undefined : 0;
  const n = Number(v);
  return Number.isSafeInteger(n) && n >= 0 ? n : undefined;
}

async function listTags(store: ImageStore, c: Ctx): Promise<void> {
  let tags = store.tagsOf(c.repo).sort();
  if (tags.length === 0) throw new RegistryHttpError(404, "NAME_UNKNOWN", `repository ${c.repo} not known`);
  const last = c.url.searchParams.get("last");
  if (last) tags = tags.filter((t) => t > last);
  const n = Number(c.url.searchParams.get("n") ?? Number.NaN);
  if (Number.isSafeInteger(n) && n >= 0) tags = tags.slice(0, n);
  sendJson(c.req, c.res, 200, { name: c.name, tags });
}

async function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  const chunks: Uint8Array[] = [];
  let size = 0;
  for await (const c of req as AsyncIterable<Uint8Array>) {
    size += c.length;
    if (size > limit)
      throw new RegistryHttpError(413, "MANIFEST_INVALID", `manifest larger than ${limit} bytes`);
    chunks.push(c);
  }
  return Buffer.concat(chunks);
}

function sendJson(req: IncomingMessage, res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    ...API_VERSION_HEADER,
    "Content-Type": "application/json",
    "Content-Length": String(Buffer.byteLength(text)),
  });
  res.end(req.method === "HEAD" ? undefined : text);
}

function sendError(req: IncomingMessage, res: ServerResponse, e: RegistryHttpError): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  req.resume();
  for (const [k, v] of Object.entries(e.headers)) res.setHeader(k, v);
  sendJson(req, res, e.status, { errors: [{ code: e.code, message: e.message, detail: null }] });
}
