/**
 * Local upstreams for the egress proxy's tests and bench: a plain-HTTP and a
 * TLS origin (self-signed certificate made with openssl for the names the
 * tests map through the policy's hosts map), and a black hole that accepts
 * no connection at all.
 */
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import http from "node:http";
import https from "node:https";
import net from "node:net";
import path from "node:path";
import { newEcKey } from "./mtls.js";

export interface Origin {
  http: http.Server;
  https: https.Server;
  httpPort: number;
  httpsPort: number;
  /** PEM of the self-signed certificate (trust it as the CA). */
  ca: string;
  caFile: string;
  /** sha256 hex of GET /random (RANDOM_SIZE bytes). */
  randomSha256: string;
  close(): Promise<void>;
}

export const RANDOM_SIZE = 64 << 20;

/** A self-signed certificate for `names` (DNS SANs) and 127.0.0.1, written to dir. */
export function makeCertificate(
  dir: string,
  names: string[],
): { key: string; cert: string; certFile: string } {
  const keyFile = path.join(dir, "origin.key");
  const certFile = path.join(dir, "origin.crt");
  const san = [...names.map((n) => `DNS:${n}`), "IP:127.0.0.1"].join(",");
  try {
    execFileSync(
      "openssl",
      [
        "req",
        "-x509",
        ...newEcKey(keyFile),
        "-out",
        certFile,
        "-days",
        "2",
        "-subj",
        `/CN=${names[0]}`,
        "-addext",
        `subjectAltName=${san}`,
      ],
      { stdio: ["ignore", "ignore", "pipe"] },
    );
  } catch (err) {
    throw new Error(`openssl failed (install it with \`npm run setup\`): ${(err as Error).message}`);
  }
  return { key: readFileSync(keyFile, "utf8"), cert: readFileSync(certFile, "utf8"), certFile };
}

/**
 * Routes: /random (RANDOM_SIZE random bytes, same every call), /zeros/N (N
 * bytes), /hello, /redirect (302 to itself, forever), /never (accepts the
 * request, never answers), /echo (the request's method, URL, headers, body
 * size and sha256 as JSON), /chunked (a chunked body with a trailer), /empty (204).
 */
function handler(random: Buffer, block: Buffer): http.RequestListener {
  return (req, res) => {
    const url = new URL(req.url ?? "/", "http://origin");
    if (url.pathname === "/random") {
      res.writeHead(200, { "Content-Length": random.length, "Content-Type": "application/octet-stream" });
      res.end(random);
    } else if (url.pathname.startsWith("/zeros/")) {
      const total = Number(url.pathname.slice(7));
      res.writeHead(200, { "Content-Length": total, "Content-Type": "application/octet-stream" });
      let left = total;
      const pump = () => {
        while (left > 0) {
          const n = Math.min(left, block.length);
          left -= n;
          if (!res.write(n === block.length ? block : block.subarray(0, n)))
            return void res.once("drain", pump);
        }
        res.end();
      };
      pump();
    } else if (url.pathname === "/hello") {
      res.end("hello from origin\n");
    } else if (url.pathname === "/redirect") {
      res.writeHead(302, { Location: "/redirect" });
      res.end();
    } else if (url.pathname === "/never") {
      req.resume();
    } else if (url.pathname === "/echo") {
      const hash = createHash("sha256");
      let bytes = 0;
      req.on("data", (d: Buffer) => {
        bytes += d.length;
        hash.update(d);
      });
      req.on("end", () =>
        res.end(
          JSON.stringify({
            method: req.method,
            url: req.url,
            headers: req.headers,
            bytes,
            sha256: hash.digest("hex"),
          }),
        ),
      );
    } else if (url.pathname === "/chunked") {
      // No length: Node frames it chunked, in several pieces.
      res.writeHead(200, { "Content-Type": "text/plain", Trailer: "X-Done" });
      for (let i = 0; i < 100; i++) res.write(`line ${i}\n`);
      res.addTrailers({ "X-Done": "yes" });
      res.end();
    } else if (url.pathname === "/empty") {
      res.writeHead(204);
      res.end();
    } else {
      res.writeHead(404);
      res.end("not found\n");
    }
  };
}

export async function startOrigin(dir: string, names: string[]): Promise<Origin> {
  const random = randomBytes(RANDOM_SIZE);
  const block = Buffer.alloc(1 << 20, 0);
  const { key, cert, certFile } = makeCertificate(dir, names);
  const h = handler(random, block);
  const plain = http.createServer(h);
  const tls = https.createServer({ key, cert }, h);
  const sockets = new Set<net.Socket>();
  for (const s of [plain, tls]) {
    s.on("connection", (c: net.Socket) => {
      sockets.add(c);
      c.once("close", () => sockets.delete(c));
    });
  }
  const port = (s: net.Server) =>
    new Promise<number>((resolve) =>
      s.listen(0, "0.0.0.0", () => resolve((s.address() as net.AddressInfo).port)),
    );
  const [httpPort, httpsPort] = [await port(plain), await port(tls)];
  return {
    http: plain,
    https: tls,
    httpPort,
    httpsPort,
    ca: cert,
    caFile: certFile,
    randomSha256: createHash("sha256").update(random).digest("hex"),
    async close() {
      for (const c of sockets) c.destroy();
      await Promise.all([plain, tls].map((s) => new Promise((r) => s.close(r))));
    },
  };
}

/**
 * A listener whose process is stopped and whose accept queue is full: a
 * connection attempt to it is never answered (SYNs are dropped), like a
 * firewalled host.
 */
export async function startBlackHole(): Promise<{ port: number; close(): void }> {
  const child: ChildProcess = spawn(
    process.execPath,
    [
      "-e",
      'const s=require("net").createServer(()=>{});s.listen({host:"127.0.0.1",port:0,backlog:1},()=>console.log(s.address().port))',
    ],
    { stdio: ["ignore", "pipe", "inherit"] },
  );
  const port = await new Promise<number>((resolve) =>
    child.stdout?.once("data", (d) => resolve(Number(String(d)))),
  );
  child.kill("SIGSTOP");
  const held: net.Socket[] = [];
  for (let i = 0; i < 4; i++) {
    const s = net.connect(port, "127.0.0.1");
    s.on("error", () => {});
    held.push(s);
  }
  await new Promise((r) => setTimeout(r, 200));
  return {
    port,
    close() {
      for (const s of held) s.destroy();
      child.kill("SIGKILL");
    },
  };
}
