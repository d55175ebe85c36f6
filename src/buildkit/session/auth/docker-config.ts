import { readFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";

/** Docker Hub's key in config.json and credential stores. */
export const DOCKER_HUB_SERVER = "https://index.docker.io/v1/";
const HUB_ALIASES = new Set([
  "docker.io",
  "index.docker.io",
  "registry-1.docker.io",
  "https://index.docker.io/v1/",
  "https://index.docker.io/v1",
  "https://registry-1.docker.io",
]);

export interface AuthEntry {
  username: string;
  password: string;
  identityToken: string;
}

export interface DockerConfig {
  auths: Map<string, AuthEntry>;
  credHelpers: Record<string, string>;
  credsStore?: string;
}

export function defaultDockerConfigPath(): string {
  const dir = process.env.DOCKER_CONFIG || path.join(os.homedir(), ".docker");
  return path.join(dir, "config.json");
}

/** Reads a docker CLI config.json; a missing file is an empty config. */
export async function loadDockerConfig(file: string): Promise<DockerConfig> {
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return { auths: new Map(), credHelpers: {} };
    throw err;
  }
  const json = JSON.parse(text) as {
    auths?: Record<string, { auth?: string; username?: string; password?: string; identitytoken?: string }>;
    credHelpers?: Record<string, string>;
    credsStore?: string;
  };
  const auths = new Map<string, AuthEntry>();
  for (const [key, a] of Object.entries(json.auths ?? {})) {
    let username = a.username ?? "";
    let password = a.password ?? "";
    if (a.auth) {
      // As the docker CLI: base64 "user:password" overrides the separate fields.
      const decoded = Buffer.from(a.auth, "base64").toString("utf8");
      const colon = decoded.indexOf(":");
      if (colon > 0) {
        username = decoded.slice(0, colon);
        password = decoded.slice(colon + 1).replace(/\0+$/, "");
      }
    }
    auths.set(key, { username, password, identityToken: a.identitytoken ?? "" });
  }
  const cfg: DockerConfig = { auths, credHelpers: { ...(json.credHelpers ?? {}) } };
  if (json.credsStore) cfg.credsStore = json.credsStore;
  return cfg;
}

/**
 * The server address docker uses for a registry host: Docker Hub's aliases
 * map to its legacy v1 URL (as BuildKit's authprovider does for
 * registry-1.docker.io); URLs reduce to host[:port].
 */
export function serverAddressFor(host: string): string {
  if (HUB_ALIASES.has(host)) return DOCKER_HUB_SERVER;
  return convertToHostname(host);
}

/** docker/cli's ConvertToHostname. */
export function convertToHostname(maybeUrl: string): string {
  let s = maybeUrl;
  const scheme = s.indexOf("://");
  if (scheme >= 0) s = s.slice(scheme + 3);
  const slash = s.indexOf("/");
  return slash >= 0 ? s.slice(0, slash) : s;
}

/** The file store's lookup: exact key, then legacy keys by hostname. */
export function findAuth(cfg: DockerConfig, server: string): AuthEntry | undefined {
  const exact = cfg.auths.get(server);
  if (exact) return exact;
  for (const [key, entry] of cfg.auths) {
    if (serverAddressFor(key) === server || convertToHostname(key) === server) return entry;
  }
  return undefined;
}
