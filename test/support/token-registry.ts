import { type ChildProcess, spawn } from "node:child_process";
import { createPrivateKey, randomBytes, sign } from "node:crypto";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import http from "node:http";
import path from "node:path";
import { freePort } from "./buildkitd.js";
import { makeCertificate } from "./egress-origin.js";
import { tool } from "./tools.js";

export interface TokenRequestLog {
  method: string;
  service: string | null;
  scopes: string[];
  account: string | null;
  /** "basic", "refresh", or "anonymous". */
  auth: string;
  status: number;
}

export interface TokenRegistry {
  /** `NAME:PORT` of the registry (plain HTTP: run the daemon with --insecure-registry). */
  host: string;
  /** `NAME:PORT` of the token server (plain HTTP). */
  tokenHost: string;
  user: string;
  password: string;
  /** Every token request, in order. */
  requests: TokenRequestLog[];
  /** Seconds a token lives (the `exp` claim; distribution adds a 60 s leeway). */
  ttl: number;
  stop(): Promise<void>;
}

const SERVICE = "arca-test-registry";
const ISSUER = "arca-test-token-issuer";

/**
 * distribution's registry with `auth: token:` (plain HTTP) and a small
 * token server written for the tests: it checks the service, parses the
 * scopes, authenticates Basic credentials or a refresh token (issued by
 * `offline_token=true` logins, as Docker Hub does), grants pull and push to
 * the test user and nothing to anonymous or wrong credentials (401), and
 * signs ES256 tokens with an `x5c` header whose certificate is the
 * registry's rootcertbundle; tokens carry exp/nbf/iat.
 */
export async function startTokenRegistry(
  dir: string,
  name = "tokenreg.arca.test",
  tokenName = "token.arca.test",
  ttl = 300,
): Promise<TokenRegistry> {
  mkdirSync(dir, { recursive: true });
  const { certFile, cert } = makeCertificate(dir, [ISSUER]);
  const key = createPrivateKey(readFileSync(path.join(dir, "origin.key")));
  const x5c = cert.replace(/-----[^-]+-----/g, "").replace(/\s+/g, "");
  const user = "tokenuser";
  const password = "t0ken-pass";
  const refreshTokens = new Set<string>();
  const requests: TokenRequestLog[] = [];
  const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString("base64url");
  const issue = (account: string, access: { type: string; name: string; actions: string[] }[]) => {
    const now = Math.floor(Date.now() / 1000);
    const header = b64({ alg: "ES256", typ: "JWT", x5c: [x5c] });
    const claims = b64({
      iss: ISSUER,
      sub: account,
      aud: SERVICE,
      exp: now + ttl,
      nbf: now - 1,
      iat: now,
      jti: randomBytes(8).toString("hex"),
      access,
    });
    const sig = sign("sha256", Buffer.from(`${header}.${claims}`), { key, dsaEncoding: "ieee-p1363" });
    return `${header}.${claims}.${sig.toString("base64url")}`;
  };

  const server = http.createServer(async (req, res) => {
    const url = new URL(req.url ?? "/", "http://x");
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const form = new URLSearchParams(Buffer.concat(chunks).toString("utf8"));
    const get = (k: string) => (req.method === "POST" ? form.get(k) : url.searchParams.get(k));
    const scopes = (
      req.method === "POST" ? (form.get("scope") ?? "").split(" ") : url.searchParams.getAll("scope")
    ).filter(Boolean);
    const log: TokenRequestLog = {
      method: req.method ?? "",
      service: get("service"),
      scopes,
      account: get("account"),
      auth: "anonymous",
      status: 200,
    };
    requests.push(log);
    const answer = (status: number, body: unknown) => {
      log.status = status;
      res.writeHead(status, { "content-type": "application/json" });
      res.end(JSON.stringify(body));
    };
    if (url.pathname !== "/token") return answer(404, { details: "not found" });
    if (get("service") !== SERVICE) return answer(400, { details: `unknown service ${get("service")}` });
    let authenticated = false;
    if (req.method === "POST") {
      log.auth = "refresh";
      if (form.get("grant_type") !== "refresh_token" || !refreshTokens.has(form.get("refresh_token") ?? "")) {
        return answer(401, { details: "invalid refresh token" });
      }
      authenticated = true;
    } else {
      const m = /^Basic (.+)$/.exec(req.headers.authorization ?? "");
      if (m) {
        log.auth = "basic";
        const [u, p] = Buffer.from(m[1] as string, "base64")
          .toString()
          .split(":");
        if (u !== user || p !== password) return answer(401, { details: "incorrect username or password" });
        authenticated = true;
      }
    }
    const access = [];
    for (const s of scopes) {
      const m = /^repository:([a-z0-9._/-]+):([a-z,*]+)$/.exec(s);
      if (!m) return answer(400, { details: `invalid scope ${s}` });
      const actions = (m[2] as string)
        .split(",")
        .filter((a) => authenticated && (a === "pull" || a === "push"));
      access.push({ type: "repository", name: m[1] as string, actions });
    }
    const body: Record<string, unknown> = {
      token: issue(authenticated ? user : "", access),
      expires_in: ttl,
      issued_at: new Date().toISOString(),
    };
    if (authenticated && (url.searchParams.get("offline_token") === "true" || req.method === "POST")) {
      const r = randomBytes(16).toString("hex");
      refreshTokens.add(r);
      body.refresh_token = r;
    }
    answer(200, body);
  });
  const tokenPort = await new Promise<number>((resolve) =>
    server.listen(0, "127.0.0.1", () => resolve((server.address() as { port: number }).port)),
  );
  const port = await freePort();
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
      "http:",
      `  addr: 127.0.0.1:${port}`,
      "auth:",
      "  token:",
      `    realm: http://${tokenName}:${tokenPort}/token`,
      `    service: ${SERVICE}`,
      `    issuer: ${ISSUER}`,
      `    rootcertbundle: ${certFile}`,
      "",
    ].join("\n"),
  );
  const child: ChildProcess = spawn(tool("registry"), ["serve", config], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  child.stdout?.on("data", (d: Buffer) => {
    out += d;
  });
  child.stderr?.on("data", (d: Buffer) => {
    out += d;
  });
  const deadline = Date.now() + 20_000;
  for (;;) {
    const status = await new Promise<number>((resolve) =>
      http
        .get({ host: "127.0.0.1", port, path: "/v2/" }, (r) => {
          r.resume();
          resolve(r.statusCode ?? 0);
        })
        .on("error", () => resolve(0)),
    );
    if (status === 401) break;
    if (child.exitCode !== null || Date.now() > deadline) {
      child.kill();
      server.close();
      throw new Error(`token registry did not start:\n${out}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    host: `${name}:${port}`,
    tokenHost: `${tokenName}:${tokenPort}`,
    user,
    password,
    requests,
    ttl,
    async stop() {
      server.close();
      server.closeAllConnections();
      if (child.exitCode === null) {
        child.kill("SIGTERM");
        await new Promise((r) => child.once("exit", r));
      }
    },
  };
}
