import { existsSync } from "node:fs";
import { copyFile, mkdir, readdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { buildkitdConfig, EGRESS_PORT, type RegistryHostConfig } from "./buildkitd-config.js";

/** Registry settings the daemon and BuildKit share (dockerd's --insecure-registry and certs.d). */
export interface RegistrySettings {
  /** `host[:port]` reached over plain HTTP (or TLS without verification). */
  insecure?: string[];
  /** dockerd's layout: `<dir>/<host[:port]>/ca.crt`. */
  certsDir?: string;
  /** Mirrors of docker.io (`https://host`, `http://host:port`), after Arca's store. */
  mirrors?: string[];
}

export interface ChannelConfigInput {
  channelDir: string;
  registryHost: string;
  registries?: RegistrySettings;
  /** buildkitd's own egress credential (`user:password`), for its HTTP(S)_PROXY. */
  egressCredential?: string;
  gcKeepBytes?: number;
}

/** Where the sandbox sees the channel directory. */
const IN_SANDBOX = "/run/arca";

/**
 * Writes the per-daemon configuration the entrypoint reads from the channel:
 * buildkitd.toml (registry mirrors, insecure registries, CA certificates
 * copied into the channel) and buildkitd.env (HTTP(S)_PROXY pointing at the
 * egress listener with buildkitd's credential; NO_PROXY keeps the loopback
 * registry endpoint direct). Sharing them with the sandbox's root is
 * shareChannel's job, which runs after this. Returns whether anything
 * changed (a running buildkitd must then restart to see it).
 */
export async function writeChannelConfig(i: ChannelConfigInput): Promise<boolean> {
  await mkdir(i.channelDir, { recursive: true, mode: 0o770 });
  const registries: Record<string, RegistryHostConfig> = {};
  for (const host of i.registries?.insecure ?? []) registries[host] = { http: true };
  const mirrorHosts: string[] = [];
  for (const m of i.registries?.mirrors ?? []) {
    const url = new URL(m);
    mirrorHosts.push(url.host);
    if (url.protocol === "http:") registries[url.host] = { ...registries[url.host], http: true };
  }
  const certs = await collectCaCerts(i.registries?.certsDir);
  // Each CA also goes into one flat directory that buildkitd's SSL_CERT_DIR names, so that
  // ADD https:// and git trust it as well as the registry it was configured for.
  const certsOut = path.join(i.channelDir, "certs.d");
  const caOut = path.join(i.channelDir, "ca");
  await rm(certsOut, { recursive: true, force: true });
  await rm(caOut, { recursive: true, force: true });
  await mkdir(caOut, { recursive: true });
  for (const [host, file] of certs) {
    const dir = path.join(certsOut, host);
    await mkdir(dir, { recursive: true });
    await copyFile(file, path.join(dir, "ca.crt"));
    await copyFile(file, path.join(caOut, `${host.replace(/[^a-zA-Z0-9.-]/g, "_")}.crt`));
    registries[host] = { ...registries[host], ca: [`${IN_SANDBOX}/certs.d/${host}/ca.crt`] };
  }
  const toml = buildkitdConfig({
    registryHost: i.registryHost,
    mirrored: Object.keys(registries),
    registries,
    dockerHubMirrors: mirrorHosts,
    gcKeepBytes: i.gcKeepBytes,
  });
  let changed = await writeIfChanged(path.join(i.channelDir, "buildkitd.toml"), toml, 0o644);
  const env = i.egressCredential ? proxyEnv(`http://${i.egressCredential}@127.0.0.1:${EGRESS_PORT}`) : "";
  const envFile = path.join(i.channelDir, "buildkitd.env");
  // Readable by the sandbox's root through the group only: it holds buildkitd's credential.
  if (env) changed = (await writeIfChanged(envFile, env, 0o640)) || changed;
  else if (existsSync(envFile)) {
    await rm(envFile);
    changed = true;
  }
  return changed;
}

/** HTTP(S)_PROXY for buildkitd: everything but its own loopback (the registry endpoint) goes out through egress. */
function proxyEnv(url: string): string {
  const noProxy = "127.0.0.1,localhost,::1";
  return [
    `HTTP_PROXY=${url}`,
    `HTTPS_PROXY=${url}`,
    `NO_PROXY=${noProxy}`,
    `http_proxy=${url}`,
    `https_proxy=${url}`,
    `no_proxy=${noProxy}`,
    `SSL_CERT_DIR=${IN_SANDBOX}/ca`,
    "",
  ].join("\n");
}

async function collectCaCerts(dir: string | undefined): Promise<[string, string][]> {
  if (!dir || !existsSync(dir)) return [];
  const out: [string, string][] = [];
  for (const host of (await readdir(dir)).sort()) {
    const file = path.join(dir, host, "ca.crt");
    if (existsSync(file)) out.push([host, file]);
  }
  return out;
}

async function writeIfChanged(file: string, text: string, mode: number): Promise<boolean> {
  const old = await readFile(file, "utf8").catch(() => undefined);
  if (old === text) return false;
  const tmp = `${file}.tmp`;
  await writeFile(tmp, text, { mode });
  await rename(tmp, file);
  return true;
}
