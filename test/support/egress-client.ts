/** Clients of the egress proxy for tests and benches: raw CONNECT, curl. */
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import http from "node:http";
import type net from "node:net";

export interface ProxyAddress {
  /** TCP port on 127.0.0.1, or a unix socket path. */
  port?: number;
  socketPath?: string;
}

export function basicAuth(user: string, pass: string): string {
  return `Basic ${Buffer.from(`${user}:${pass}`).toString("base64")}`;
}

/**
 * Sends `CONNECT target` and resolves with the status line, headers and body
 * of a refusal, or the open socket on 200.
 */
export function connectVia(
  proxy: ProxyAddress,
  target: string,
  authorization?: string,
): Promise<{
  status: number;
  statusMessage: string;
  headers: http.IncomingHttpHeaders;
  body: string;
  socket?: net.Socket;
}> {
  return new Promise((resolve, reject) => {
    const req = http.request({
      ...(proxy.socketPath ? { socketPath: proxy.socketPath } : { host: "127.0.0.1", port: proxy.port }),
      method: "CONNECT",
      path: target,
      agent: false,
      headers: { Host: target, ...(authorization ? { "Proxy-Authorization": authorization } : {}) },
    });
    req.once("connect", (res, socket, head) => {
      const base = {
        status: res.statusCode ?? 0,
        statusMessage: res.statusMessage ?? "",
        headers: res.headers,
      };
      if (res.statusCode === 200) return resolve({ ...base, body: "", socket });
      let body = head.toString("utf8");
      socket.setEncoding("utf8");
      socket.on("data", (d: string) => {
        body += d;
      });
      socket.on("error", () => {});
      socket.once("close", () => resolve({ ...base, body }));
    });
    req.once("error", reject);
    req.end();
  });
}

export interface CurlResult {
  code: number | null;
  stderr: string;
  bytes: number;
  sha256: string;
  stdout: Buffer;
}

/** Runs curl, hashing stdout as it streams (never buffering big downloads). */
export function curl(args: string[], keepStdout = false): Promise<CurlResult> {
  return new Promise((resolve, reject) => {
    const p = spawn("curl", args, { stdio: ["ignore", "pipe", "pipe"] });
    const hash = createHash("sha256");
    let bytes = 0;
    const kept: Buffer[] = [];
    let stderr = "";
    p.stdout.on("data", (d: Buffer) => {
      bytes += d.length;
      hash.update(d);
      if (keepStdout) kept.push(d);
    });
    p.stderr.on("data", (d: Buffer) => {
      stderr += d.toString();
    });
    p.once("error", (err) =>
      reject(new Error(`curl cannot run (install it with \`npm run setup\`): ${err.message}`)),
    );
    p.once("close", (code) =>
      resolve({ code, stderr, bytes, sha256: hash.digest("hex"), stdout: Buffer.concat(kept) }),
    );
  });
}
