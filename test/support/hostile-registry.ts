/**
 * A small OCI distribution server (pull side only) that serves a valid
 * busybox-based image and, per repository, misbehaves the way a broken or
 * malicious upstream registry can. For pull and build tests of the egress
 * path and of any registry client.
 *
 *   const reg = await startHostileRegistry(dir);           // TLS, test CA
 *   // FROM ${reg.host}/good:1        -> works
 *   // FROM ${reg.host}/bad-digest:1  -> a layer whose bytes do not match its digest
 *   await reg.stop();
 *
 * Every repository has one tag, `1`, and its own image: the shared busybox
 * layer plus a "payload" layer unique to the repository (/payload.bin, random
 * bytes, and /repo.txt with the repository's name), so that a blob pulled
 * from one repository is never found in a client's cache when another is
 * pulled. The misbehaviour always concerns the tag's manifest or the payload
 * layer; `/v2/`, the config and the busybox layer are always served right.
 *
 * Repositories are named after their behaviour by default (`/v2/cut-blob/…`
 * behaves as "cut-blob"); `repos` maps other names to behaviours.
 *
 * Routes: GET /v2/ (200 {}), GET|HEAD /v2/<repo>/manifests/<tag|digest>,
 * GET|HEAD /v2/<repo>/blobs/<digest> (single `Range: bytes=a-[b]` honoured).
 * Anonymous (no auth); Docker-Content-Digest on every manifest and blob answer.
 */
import { createHash, randomBytes } from "node:crypto";
import { mkdirSync, readFileSync } from "node:fs";
import http from "node:http";
import https from "node:https";
import net from "node:net";
import path from "node:path";
import { gzipSync } from "node:zlib";
import tar from "tar-stream";
import { writeBusyboxRootfs } from "./busybox-rootfs.js";
import { makeCertificate } from "./egress-origin.js";

export type HostileBehaviour =
  /** A correct registry: proves the client and the path work before the hostile cases. */
  | "good"
  /** The payload layer's bytes do not match its digest (same length, bytes flipped). */
  | "bad-digest"
  /** The tag's manifest is `hugeManifestBytes` long (HEAD says so, with its digest). */
  | "huge-manifest"
  /** As huge-manifest, but HEAD gives no digest: a client must GET (and stream) it all to learn it. */
  | "huge-manifest-get"
  /** Every manifest request is redirected (307) to a new URL of the same manifest, forever. */
  | "redirect-manifest"
  /** Every request for the payload layer is redirected (307) to a new URL of the same blob, forever. */
  | "redirect-blob"
  /** Manifest requests are read and never answered (the connection stays open, silent). */
  | "never-manifest"
  /** Payload-layer requests are read and never answered. */
  | "never-blob"
  /** The payload layer's headers and bytes up to its middle are sent, then nothing more, the connection open. */
  | "stall-blob"
  /** The payload layer's headers (full Content-Length) and bytes up to its middle are sent, then the connection is cut (every time, ranges included). */
  | "cut-blob"
  /** As cut-blob on the first request for the payload layer only; later requests (and ranges) succeed. */
  | "cut-blob-once";

export const HOSTILE_BEHAVIOURS: readonly HostileBehaviour[] = [
  "good",
  "bad-digest",
  "huge-manifest",
  "huge-manifest-get",
  "redirect-manifest",
  "redirect-blob",
  "never-manifest",
  "never-blob",
  "stall-blob",
  "cut-blob",
  "cut-blob-once",
];

export interface HostileRegistryOptions {
  /** Name in the certificate and in `host` (map it to 127.0.0.1 in the egress policy's hosts map). Default hostile.arca.test. */
  name?: string;
  /** Plain HTTP instead of TLS (an insecure registry). */
  plain?: boolean;
  /** Extra repositories: name → behaviour (each behaviour is also served under its own name). */
  repos?: Record<string, HostileBehaviour>;
  /** Size of each repository's /payload.bin; default 4 MiB. */
  payloadBytes?: number;
  /** Per repository sizes that differ from payloadBytes (e.g. a 100 MB layer to cut mid-way). */
  payloadBytesOf?: Record<string, number>;
  /** Size of the huge manifests; default 100 MiB. */
  hugeManifestBytes?: number;
}

export interface HostileBlob {
  digest: string;
  size: number;
  mediaType: string;
}

export interface HostileImage {
  /** Digest of the manifest served for tag `1` (the huge one for huge-manifest*). */
  manifestDigest: string;
  config: HostileBlob;
  /** [busybox layer, payload layer]. */
  layers: HostileBlob[];
  /** sha256 hex of /payload.bin inside the image. */
  payloadSha256: string;
}

export interface HostileRequest {
  method: string;
  url: string;
  repo?: string;
  behaviour?: HostileBehaviour;
  /** The Range header, when the client sent one (a resumed download). */
  range?: string;
}

export interface HostileRegistry {
  /** `name:port`, to use in image references. */
  host: string;
  port: number;
  /** A TCP port that accepts connections and never sends a byte (not even a TLS handshake). */
  silentPort: number;
  /** The test CA (the server's self-signed certificate): PEM and file. Undefined when plain. */
  ca?: string;
  caFile?: string;
  /** The image served under each repository name. */
  images: Record<string, HostileImage>;
  /** Every request received, in order. */
  requests: HostileRequest[];
  stop(): Promise<void>;
}

const MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json";
const CONFIG_TYPE = "application/vnd.oci.image.config.v1+json";
const LAYER_TYPE = "application/vnd.oci.image.layer.v1.tar+gzip";

const sha256 = (b: Buffer | string) => `sha256:${createHash("sha256").update(b).digest("hex")}`;

interface Repo {
  behaviour: HostileBehaviour;
  image: HostileImage;
  manifest: Buffer;
  blobs: Map<string, Buffer>;
  payloadDigest: string;
  cuts: number;
}

async function payloadLayer(repo: string, payload: Buffer): Promise<Buffer> {
  const pack = tar.pack();
  const mtime = new Date(0);
  pack.entry({ name: "payload.bin", mode: 0o644, mtime }, payload);
  pack.entry({ name: "repo.txt", mode: 0o644, mtime }, `${repo}\n`);
  pack.finalize();
  const chunks: Buffer[] = [];
  for await (const c of pack) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

async function makeRepo(
  name: string,
  behaviour: HostileBehaviour,
  base: { gz: Buffer; diffId: string },
  payloadBytes: number,
): Promise<Repo> {
  const payload = randomBytes(payloadBytes);
  const layerTar = await payloadLayer(name, payload);
  const layerGz = gzipSync(layerTar, { level: 1 });
  const arch = process.arch === "arm64" ? "arm64" : "amd64";
  const config = Buffer.from(
    JSON.stringify({
      architecture: arch,
      os: "linux",
      config: {
        Env: ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
        Cmd: ["/bin/sh"],
        Labels: { "test.hostile.repo": name },
      },
      rootfs: { type: "layers", diff_ids: [base.diffId, sha256(layerTar)] },
      history: [{ created_by: "busybox rootfs" }, { created_by: `payload for ${name}` }],
    }),
  );
  const desc = (b: Buffer, mediaType: string): HostileBlob => ({
    digest: sha256(b),
    size: b.length,
    mediaType,
  });
  const configDesc = desc(config, CONFIG_TYPE);
  const baseDesc = desc(base.gz, LAYER_TYPE);
  const payloadDesc = desc(layerGz, LAYER_TYPE);
  const layers = [baseDesc, payloadDesc];
  const manifest = Buffer.from(
    JSON.stringify({ schemaVersion: 2, mediaType: MANIFEST_TYPE, config: configDesc, layers }),
  );
  const blobs = new Map<string, Buffer>([
    [configDesc.digest, config],
    [baseDesc.digest, base.gz],
    [payloadDesc.digest, layerGz],
  ]);
  return {
    behaviour,
    manifest,
    blobs,
    payloadDigest: payloadDesc.digest,
    cuts: 0,
    image: {
      manifestDigest: sha256(manifest),
      config: configDesc,
      layers,
      payloadSha256: createHash("sha256").update(payload).digest("hex"),
    },
  };
}

/** The huge manifest: valid JSON (an OCI manifest with one enormous annotation), generated in 1 MiB pieces. */
function hugeManifest(size: number): { head: Buffer; tail: Buffer; fill: Buffer; digest: string } {
  const head = Buffer.from(
    `{"schemaVersion":2,"mediaType":"${MANIFEST_TYPE}","config":{"mediaType":"${CONFIG_TYPE}","digest":"sha256:${"0".repeat(64)}","size":2},"layers":[],"annotations":{"pad":"`,
  );
  const tail = Buffer.from(`"}}`);
  const fill = Buffer.alloc(1 << 20, "a");
  const hash = createHash("sha256").update(head);
  let left = size - head.length - tail.length;
  while (left > 0) {
    const n = Math.min(left, fill.length);
    hash.update(n === fill.length ? fill : fill.subarray(0, n));
    left -= n;
  }
  hash.update(tail);
  return { head, tail, fill, digest: `sha256:${hash.digest("hex")}` };
}

/** Writes `body` honouring backpressure; resolves when all is handed to the socket. */
async function writeAll(res: http.ServerResponse, body: Buffer): Promise<void> {
  for (let off = 0; off < body.length; off += 1 << 20) {
    if (res.destroyed) return;
    if (!res.write(body.subarray(off, Math.min(body.length, off + (1 << 20)))))
      await new Promise((r) => res.once("drain", r));
  }
}

export async function startHostileRegistry(
  dir: string,
  opts: HostileRegistryOptions = {},
): Promise<HostileRegistry> {
  const name = opts.name ?? "hostile.arca.test";
  const hugeSize = opts.hugeManifestBytes ?? 100 << 20;
  mkdirSync(dir, { recursive: true });
  const rootfs = path.join(dir, "busybox-rootfs.tar");
  await writeBusyboxRootfs(rootfs);
  const baseTar = readFileSync(rootfs);
  const base = { gz: gzipSync(baseTar, { level: 1 }), diffId: sha256(baseTar) };
  const names: Record<string, HostileBehaviour> = {
    ...Object.fromEntries(HOSTILE_BEHAVIOURS.map((b) => [b, b])),
    ...opts.repos,
  };
  const repos = new Map<string, Repo>();
  for (const [repo, behaviour] of Object.entries(names))
    repos.set(
      repo,
      await makeRepo(repo, behaviour, base, opts.payloadBytesOf?.[repo] ?? opts.payloadBytes ?? 4 << 20),
    );
  const huge = hugeManifest(hugeSize);
  for (const r of repos.values())
    if (r.behaviour === "huge-manifest" || r.behaviour === "huge-manifest-get")
      r.image.manifestDigest = huge.digest;

  const requests: HostileRequest[] = [];
  const held = new Set<net.Socket>();
  const hold = (req: http.IncomingMessage) => {
    // Read whatever comes and never answer; stop() releases it.
    req.resume();
    held.add(req.socket);
    req.socket.once("close", () => held.delete(req.socket));
  };

  const serveHuge = async (req: http.IncomingMessage, res: http.ServerResponse, withDigest: boolean) => {
    res.writeHead(200, {
      "Content-Type": MANIFEST_TYPE,
      "Content-Length": hugeSize,
      ...(withDigest ? { "Docker-Content-Digest": huge.digest } : {}),
    });
    if (req.method === "HEAD") return void res.end();
    await writeAll(res, huge.head);
    let left = hugeSize - huge.head.length - huge.tail.length;
    while (left > 0 && !res.destroyed) {
      const n = Math.min(left, huge.fill.length);
      left -= n;
      if (!res.write(n === huge.fill.length ? huge.fill : huge.fill.subarray(0, n)))
        await new Promise((r) => res.once("drain", r));
    }
    res.end(huge.tail);
  };

  const serveBlob = async (
    req: http.IncomingMessage,
    res: http.ServerResponse,
    repo: Repo,
    digest: string,
    body: Buffer,
  ) => {
    const isPayload = digest === repo.payloadDigest;
    const b = repo.behaviour;
    if (isPayload && b === "bad-digest") {
      body = Buffer.from(body);
      // Flip bytes in the middle (a gzip stream's CRC would also catch the end; the digest must catch it first).
      for (let i = body.length >> 1; i < (body.length >> 1) + 16 && i < body.length; i++)
        body.writeUInt8(body.readUInt8(i) ^ 0xff, i);
    }
    const range = /^bytes=(\d+)-(\d*)$/.exec(String(req.headers.range ?? ""));
    let start = 0;
    let end = body.length - 1;
    if (range) {
      start = Number(range[1]);
      if (range[2]) end = Math.min(end, Number(range[2]));
      if (start > end) {
        res.writeHead(416, { "Content-Range": `bytes */${body.length}` });
        return void res.end();
      }
    }
    const part = body.subarray(start, end + 1);
    res.writeHead(range ? 206 : 200, {
      "Content-Type": "application/octet-stream",
      "Content-Length": part.length,
      "Docker-Content-Digest": digest,
      "Accept-Ranges": "bytes",
      ...(range ? { "Content-Range": `bytes ${start}-${end}/${body.length}` } : {}),
    });
    if (req.method === "HEAD") return void res.end();
    const cut = isPayload && (b === "cut-blob" || (b === "cut-blob-once" && repo.cuts++ === 0));
    if (cut || (isPayload && b === "stall-blob")) {
      res.flushHeaders();
      // The blob's first half at most, whatever range was asked: a client resuming never gets past it.
      await writeAll(res, part.subarray(0, Math.max(0, (body.length >> 1) - start)));
      if (cut) {
        // Let those bytes reach the client, then cut the connection mid-body.
        await new Promise((r) => setTimeout(r, 50));
        res.socket?.destroy();
      } else {
        held.add(res.socket as net.Socket);
        res.socket?.once("close", () => held.delete(res.socket as net.Socket));
      }
      return;
    }
    await writeAll(res, part);
    res.end();
  };

  const handler: http.RequestListener = (req, res) => {
    const url = new URL(req.url ?? "/", "http://registry");
    const m = /^\/v2\/(.+)\/(manifests|blobs)\/([^/]+)$/.exec(url.pathname);
    const repo = m ? repos.get(m[1] as string) : undefined;
    requests.push({
      method: req.method ?? "",
      url: req.url ?? "",
      ...(m ? { repo: m[1] } : {}),
      ...(repo ? { behaviour: repo.behaviour } : {}),
      ...(req.headers.range ? { range: req.headers.range } : {}),
    });
    const fail = (status: number, code: string, message: string) => {
      res.writeHead(status, { "Content-Type": "application/json" });
      res.end(JSON.stringify({ errors: [{ code, message }] }));
    };
    if (req.method !== "GET" && req.method !== "HEAD") return fail(405, "UNSUPPORTED", "pull only");
    if (url.pathname === "/v2/" || url.pathname === "/v2") {
      res.writeHead(200, {
        "Content-Type": "application/json",
        "Docker-Distribution-API-Version": "registry/2.0",
      });
      return void res.end("{}");
    }
    if (!m || !repo) return fail(404, "NAME_UNKNOWN", `repository ${m?.[1] ?? url.pathname} not known`);
    const [, , kind, ref] = m as unknown as [string, string, string, string];
    const b = repo.behaviour;
    const redirect = () => {
      const hop = Number(url.searchParams.get("hop") ?? "0") + 1;
      res.writeHead(307, { Location: `${url.pathname}?hop=${hop}`, "Content-Length": 0 });
      res.end();
    };
    if (kind === "manifests") {
      if (b === "never-manifest") return hold(req);
      if (b === "redirect-manifest") return redirect();
      if (b === "huge-manifest" || b === "huge-manifest-get") {
        if (ref === "1" || ref === huge.digest)
          return void serveHuge(req, res, b === "huge-manifest").catch(() => res.destroy());
        return fail(404, "MANIFEST_UNKNOWN", `manifest ${ref} not known`);
      }
      if (ref !== "1" && ref !== repo.image.manifestDigest)
        return fail(404, "MANIFEST_UNKNOWN", `manifest ${ref} not known`);
      res.writeHead(200, {
        "Content-Type": MANIFEST_TYPE,
        "Content-Length": repo.manifest.length,
        "Docker-Content-Digest": repo.image.manifestDigest,
      });
      return void res.end(req.method === "HEAD" ? undefined : repo.manifest);
    }
    const blob = repo.blobs.get(ref);
    if (!blob) return fail(404, "BLOB_UNKNOWN", `blob ${ref} not known`);
    if (ref === repo.payloadDigest) {
      if (b === "never-blob") return hold(req);
      if (b === "redirect-blob") return redirect();
    }
    serveBlob(req, res, repo, ref, blob).catch(() => res.destroy());
  };

  let server: http.Server | https.Server;
  let ca: string | undefined;
  let caFile: string | undefined;
  if (opts.plain) server = http.createServer(handler);
  else {
    const cert = makeCertificate(dir, [name]);
    ca = cert.cert;
    caFile = cert.certFile;
    server = https.createServer({ key: cert.key, cert: cert.cert }, handler);
  }
  const sockets = new Set<net.Socket>();
  const silent = net.createServer((s) => {
    s.on("error", () => {});
    sockets.add(s);
    s.once("close", () => sockets.delete(s));
  });
  server.on("connection", (s: net.Socket) => {
    sockets.add(s);
    s.once("close", () => sockets.delete(s));
  });
  const listen = (s: net.Server) =>
    new Promise<number>((resolve, reject) => {
      s.once("error", reject);
      s.listen(0, "127.0.0.1", () => resolve((s.address() as net.AddressInfo).port));
    });
  const port = await listen(server);
  const silentPort = await listen(silent);
  return {
    host: `${name}:${port}`,
    port,
    silentPort,
    ...(ca ? { ca, caFile } : {}),
    images: Object.fromEntries([...repos].map(([n, r]) => [n, r.image])),
    requests,
    async stop() {
      for (const s of [...sockets, ...held]) s.destroy();
      await Promise.all([server, silent].map((s) => new Promise((r) => s.close(r))));
    },
  };
}
