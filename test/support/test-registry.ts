import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import http from "node:http";
import https from "node:https";
import path from "node:path";
import { freePort } from "./buildkitd.js";
import { makeCertificate } from "./egress-origin.js";
import { tool } from "./tools.js";

export interface TestRegistry {
  /** `registry.arca.test:PORT` (the name the egress policy's hosts map sends to 127.0.0.1). */
  host: string;
  port: number;
  caFile: string;
  user: string;
  password: string;
  /** GET on the registry's API with the test credentials; the parsed JSON body and status. */
  api(urlPath: string): Promise<{ status: number; body: unknown }>;
  stop(): Promise<void>;
}

/**
 * distribution's registry (built by set-up from its pinned Go module) with
 * TLS (a throwaway CA for `name`) and htpasswd basic auth, on 127.0.0.1;
 * `plain`: anonymous plain HTTP instead (an insecure registry).
 */
export async function startTestRegistry(
  dir: string,
  name = "registry.arca.test",
  opts: { plain?: boolean } = {},
): Promise<TestRegistry> {
  mkdirSync(dir, { recursive: true });
  const port = await freePort();
  const certDir = path.join(dir, "tls");
  mkdirSync(certDir, { recursive: true });
  const { cert, certFile } = makeCertificate(certDir, [name]);
  const user = "arca";
  const password = "s3cret-pass";
  const htpasswd = path.join(dir, "htpasswd");
  try {
    execFileSync("htpasswd", ["-Bbc", htpasswd, user, password], { stdio: ["ignore", "ignore", "pipe"] });
  } catch (err) {
    throw new Error(`htpasswd failed (install it with \`npm run setup\`): ${(err as Error).message}`);
  }
  const config = path.join(dir, "config.yml");
  writeFileSync(
    config,
    [
      "version: 0.1",
      "log:",
      "  level: warn",
      "storage:",
      "  filesystem:",
      `    rootdirectory: ${path.join(dir, "data")}`,
      "  delete:",
      "    enabled: true",
      "http:",
      `  addr: 127.0.0.1:${port}`,
      ...(opts.plain
        ? []
        : [
            "  tls:",
            `    certificate: ${certFile}`,
            `    key: ${path.join(certDir, "origin.key")}`,
            "auth:",
            "  htpasswd:",
            "    realm: arca-test",
            `    path: ${htpasswd}`,
          ]),
      "",
    ].join("\n"),
  );
  const child: ChildProcess = spawn(tool("registry"), ["serve", config], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  let log = "";
  child.stdout?.on("data", (d: Buffer) => {
    log += d.toString();
  });
  child.stderr?.on("data", (d: Buffer) => {
    log += d.toString();
  });
  const api = (urlPath: string) =>
    new Promise<{ status: number; body: unknown }>((resolve, reject) => {
      const req = (opts.plain ? http : https).get(
        {
          host: "127.0.0.1",
          port,
          path: urlPath,
          servername: name,
          ca: cert,
          auth: `${user}:${password}`,
          headers: {
            Accept:
              "application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json, */*",
          },
        },
        (res) => {
          let text = "";
          res.setEncoding("utf8");
          res.on("data", (c: string) => {
            text += c;
          });
          res.on("end", () => {
            let body: unknown = text;
            try {
              body = JSON.parse(text);
            } catch {}
            resolve({ status: res.statusCode ?? 0, body });
          });
        },
      );
      req.on("error", reject);
    });
  const deadline = Date.now() + 20_000;
  for (;;) {
    try {
      if ((await api("/v2/")).status === 200) break;
    } catch {}
    if (child.exitCode !== null || Date.now() > deadline) {
      child.kill();
      throw new Error(`registry did not start:\n${log}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    host: `${name}:${port}`,
    port,
    caFile: certFile,
    user,
    password,
    api,
    async stop() {
      if (child.exitCode === null) {
        child.kill("SIGTERM");
        await new Promise((r) => child.once("exit", r));
      }
    },
  };
}
