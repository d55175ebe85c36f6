import type { IncomingMessage } from "node:http";
import { type Challenge, parseChallenges } from "./challenge.js";
import type { RegistryCredentials } from "./credentials.js";
import { RegistryError } from "./errors.js";
import type { Endpoint } from "./settings.js";
import { describeErrorBody } from "./status-error.js";
import { operation, type RegistryTransport, readBody } from "./transport.js";

interface Token {
  token: string;
  expiresAt: number;
}

/**
 * Authorization for one endpoint with one set of credentials: learns the
 * scheme from the registry's 401 on /v2/ (the ping), then adds Basic
 * credentials, or fetches a bearer token per scope set from the challenge's
 * realm (refresh-token POST with an identity token, else GET with Basic
 * credentials or anonymously), cached until it expires.
 */
export class Authorizer {
  private challenge: Challenge | null | undefined;
  private readonly tokens = new Map<string, Token>();
  /** A refresh token the token server issued (docker login's IdentityToken). */
  refreshToken: string | undefined;

  constructor(
    private readonly transport: RegistryTransport,
    readonly endpoint: Endpoint,
    private readonly creds: RegistryCredentials,
    private readonly signal?: AbortSignal,
  ) {}

  private get tlsOpts() {
    return { ...(this.endpoint.ca ? { ca: this.endpoint.ca } : {}), skipVerify: !!this.endpoint.skipVerify };
  }

  /** GET /v2/: whether and how the registry wants credentials. */
  async ping(): Promise<void> {
    if (this.challenge !== undefined) return;
    const url = new URL("/v2/", this.endpoint.base);
    const res = await this.transport.request(url, {
      method: "GET",
      tls: this.tlsOpts,
      ...(this.signal ? { signal: this.signal } : {}),
    });
    res.resume();
    const status = res.statusCode ?? 0;
    if (status === 401) {
      const all = parseChallenges(res.headers["www-authenticate"]);
      this.challenge =
        all.find((c) => c.scheme === "bearer") ?? all.find((c) => c.scheme === "basic") ?? null;
      return;
    }
    if (status >= 200 && status < 300) {
      this.challenge = null;
      return;
    }
    throw new RegistryError(
      status >= 500 ? "unreachable" : "bad_content",
      `${operation("GET", url)}: not a registry (answered ${status})`,
    );
  }

  /** Whether the registry asked for credentials at all. */
  get requiresAuth(): boolean {
    return !!this.challenge;
  }

  /** The Authorization header for requests needing these scopes (`repository:a/b:pull,push`). */
  async header(scopes: string[]): Promise<Record<string, string>> {
    await this.ping();
    const c = this.challenge;
    if (!c) return {};
    if (c.scheme === "basic") {
      if (!this.creds.username) return {};
      const b = Buffer.from(`${this.creds.username}:${this.creds.password ?? ""}`).toString("base64");
      return { authorization: `Basic ${b}` };
    }
    if (this.creds.registrytoken) return { authorization: `Bearer ${this.creds.registrytoken}` };
    const key = [...scopes].sort().join(" ");
    const cached = this.tokens.get(key);
    if (cached && cached.expiresAt > Date.now()) return { authorization: `Bearer ${cached.token}` };
    const t = await this.fetchToken(c, scopes, false);
    this.tokens.set(key, t);
    return { authorization: `Bearer ${t.token}` };
  }

  /** After a 401 on a request: drop the cached token, take a new challenge (scope changes) into account. */
  invalidate(res: IncomingMessage): void {
    this.tokens.clear();
    const all = parseChallenges(res.headers["www-authenticate"]);
    const next = all.find((c) => c.scheme === "bearer") ?? all.find((c) => c.scheme === "basic");
    if (next) this.challenge = next;
  }

  /**
   * docker login: checks the credentials against the registry. Basic: GET
   * /v2/ with them must answer 200. Bearer: the token server must issue a
   * token for them (an offline token, so it may hand out a refresh token).
   */
  async login(): Promise<void> {
    await this.ping();
    const c = this.challenge;
    if (!c) return;
    if (c.scheme === "bearer") {
      const t = await this.fetchToken(c, [], true);
      this.tokens.set("", t);
      return;
    }
    const url = new URL("/v2/", this.endpoint.base);
    const res = await this.transport.request(url, {
      method: "GET",
      headers: await this.header([]),
      tls: this.tlsOpts,
      ...(this.signal ? { signal: this.signal } : {}),
    });
    res.resume();
    if (res.statusCode !== 200) {
      throw new RegistryError(
        "unauthorized",
        `login attempt to ${url.href} failed with status: ${res.statusCode} ${res.statusMessage ?? ""}`.trim(),
      );
    }
  }

  private async fetchToken(c: Challenge, scopes: string[], offline: boolean): Promise<Token> {
    const realm = c.params.realm;
    if (!realm)
      throw new RegistryError("bad_content", `${this.endpoint.base.host}: bearer challenge without a realm`);
    let url: URL;
    try {
      url = new URL(realm);
    } catch {
      throw new RegistryError(
        "bad_content",
        `${this.endpoint.base.host}: bearer realm ${JSON.stringify(realm)} is not a URL`,
      );
    }
    const service = c.params.service;
    const refresh = this.creds.identitytoken ?? this.refreshToken;
    const tlsOpts = url.host === this.endpoint.base.host ? this.tlsOpts : {};
    let res: IncomingMessage;
    if (refresh) {
      const form = new URLSearchParams({
        grant_type: "refresh_token",
        refresh_token: refresh,
        client_id: "docker",
      });
      if (service) form.set("service", service);
      if (scopes.length) form.set("scope", scopes.join(" "));
      if (offline) form.set("access_type", "offline");
      const body = Buffer.from(form.toString());
      res = await this.transport.request(url, {
        method: "POST",
        headers: { "content-type": "application/x-www-form-urlencoded", "content-length": body.length },
        body,
        tls: tlsOpts,
        ...(this.signal ? { signal: this.signal } : {}),
      });
    } else {
      if (service) url.searchParams.set("service", service);
      for (const s of scopes) url.searchParams.append("scope", s);
      const headers: Record<string, string> = {};
      if (this.creds.username) {
        url.searchParams.set("account", this.creds.username);
        const b = Buffer.from(`${this.creds.username}:${this.creds.password ?? ""}`).toString("base64");
        headers.authorization = `Basic ${b}`;
      }
      if (offline) {
        url.searchParams.set("offline_token", "true");
        url.searchParams.set("client_id", "docker");
      }
      res = await this.transport.request(url, {
        method: "GET",
        headers,
        tls: tlsOpts,
        ...(this.signal ? { signal: this.signal } : {}),
      });
    }
    const what = operation(refresh ? "POST" : "GET", url);
    const body = await readBody(res, 1024 * 1024, what);
    const status = res.statusCode ?? 0;
    if (status !== 200) {
      const detail = describeErrorBody(body, status);
      const code =
        status === 401 || status === 403 ? "unauthorized" : status >= 500 ? "unreachable" : "bad_content";
      throw new RegistryError(
        code,
        `${operation("GET", new URL("/v2/", this.endpoint.base))}: ${status === 401 ? "unauthorized: " : ""}${detail}`,
      );
    }
    let doc: { token?: string; access_token?: string; expires_in?: number; refresh_token?: string };
    try {
      doc = JSON.parse(body.toString("utf8"));
    } catch {
      throw new RegistryError("bad_content", `${what}: the token server's answer is not JSON`);
    }
    const token = doc.token ?? doc.access_token;
    if (!token) throw new RegistryError("bad_content", `${what}: the token server's answer has no token`);
    if (doc.refresh_token) this.refreshToken = doc.refresh_token;
    // Docker's minimum lifetime is 60 s; renew a little early.
    const life = Math.max(60, Number(doc.expires_in) || 60);
    return { token, expiresAt: Date.now() + (life - 5) * 1000 };
  }
}
