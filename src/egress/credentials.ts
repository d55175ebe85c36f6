import { randomBytes } from "node:crypto";

/** Who a proxy connection belongs to: a build, the daemon itself, or buildkitd. */
export interface EgressClient {
  id: string;
  kind: "build" | "daemon" | "buildkitd";
  tags: string[];
}

export interface EgressCredential {
  username: string;
  password: string;
  /** http://user:pass@HOST:PORT */
  proxyUrl(hostPort: string): string;
  /** Revokes the credential: later requests with it get 407. */
  release(): void;
}

/** Fresh random credentials per registration; only live ones authenticate. */
export class CredentialTable {
  private readonly byPassword = new Map<string, { username: string; client: EgressClient }>();

  /** `password`: reuse a persisted one (buildkitd's survives daemon restarts, so the sandbox need not restart). */
  register(client: EgressClient, password = randomBytes(18).toString("base64url")): EgressCredential {
    const username = client.id;
    this.byPassword.set(password, { username, client: { ...client, tags: [...client.tags] } });
    const table = this.byPassword;
    return {
      username,
      password,
      proxyUrl: (hp) => `http://${encodeURIComponent(username)}:${password}@${hp}`,
      release: () => {
        table.delete(password);
      },
    };
  }

  /**
   * The client a Proxy-Authorization header authenticates, or why not
   * ("missing" / "unknown").
   */
  authenticate(header: string | undefined): EgressClient | { error: string; username?: string } {
    if (!header) return { error: "no proxy credential (Proxy-Authorization) was sent" };
    const m = /^basic\s+([A-Za-z0-9+/=_-]+)\s*$/i.exec(header);
    if (!m) return { error: "the proxy credential is not HTTP Basic" };
    const decoded = Buffer.from(m[1] as string, "base64").toString("utf8");
    const colon = decoded.indexOf(":");
    const username = colon < 0 ? decoded : decoded.slice(0, colon);
    const entry = colon < 0 ? undefined : this.byPassword.get(decoded.slice(colon + 1));
    if (!entry || entry.username !== username) {
      return { error: `the proxy credential for "${username}" is unknown or was released`, username };
    }
    return entry.client;
  }
}
