import { formatReference, parseNormalizedTagged } from "../images/index.js";
import { errorMessage } from "../util/index.js";
import { BuildError } from "./errors.js";
import { checkResourceLimits, shmSizeParam } from "./limit-params.js";
import { parsePlatform } from "./platform-param.js";
import { boolValue, goField, jsonShapes, parseJsonParam } from "./query-values.js";

/** POST /build's parameters, validated as dockerd's newImageBuildOptions and backend do. */
export interface BuildParams {
  /** Full normalized names (`docker.io/library/x:1`), deduplicated. */
  tags: string[];
  /** Path of the Dockerfile inside the context. */
  dockerfile: string;
  buildArgs: Record<string, string>;
  labels: Record<string, string>;
  target?: string;
  noCache: boolean;
  pull: boolean;
  cacheFrom: string[];
  platform?: string;
  network: "sandbox" | "none" | "host";
  /** `host=ip`, as BuildKit's add-hosts wants them. */
  extraHosts: string[];
  shmSize: number;
  /** `name=soft:hard`. */
  ulimits: string[];
  /** Extra image exporter attributes from `outputs` (moby/image type only). */
  exporterAttrs: Record<string, string>;
  quiet: boolean;
  remote: string;
  version: "1" | "2";
  session: string;
  buildId: string;
  /** From X-Registry-Config, keyed by registry. */
  credentials: Record<string, { username: string; secret: string }>;
}

export interface BuildRequestInfo {
  query: URLSearchParams;
  apiVersion: string;
  /** The X-Registry-Config header, if any. */
  registryConfig?: string;
}

function atLeast(v: string, min: string): boolean {
  const [a1 = 0, a2 = 0] = v.split(".").map(Number);
  const [b1 = 0, b2 = 0] = min.split(".").map(Number);
  return a1 - b1 > 0 || (a1 === b1 && a2 >= b2);
}

const IMAGE_EXPORTERS = new Set(["moby", "image", "docker"]);
/** Attributes Arca sets itself to land the image in its store; a client must not redirect the push. */
const RESERVED_ATTRS = new Set([
  "name",
  "push",
  "push-by-digest",
  "registry.insecure",
  "dest",
  "unpack",
  "store",
]);

export function parseBuildParams({ query: q, apiVersion, registryConfig }: BuildRequestInfo): BuildParams {
  const version = q.get("version") ?? "";
  if (version !== "" && version !== "1" && version !== "2") {
    throw new BuildError("invalid_parameter", `invalid version ${JSON.stringify(version)}`);
  }
  const shmSize = shmSizeParam(q);
  checkResourceLimits(q);
  const isolation = q.get("isolation") ?? "";
  if (isolation !== "" && isolation.toLowerCase() !== "default") {
    throw new BuildError("invalid_parameter", `Unsupported isolation: ${JSON.stringify(isolation)}`);
  }
  if (q.getAll("securityopt").length > 0) {
    throw new BuildError(
      "invalid_parameter",
      "The daemon on this platform does not support setting security options on build",
    );
  }
  const ulimits = q.get("ulimits")
    ? parseJsonParam<Record<string, unknown>[] | null>(
        q.get("ulimits") as string,
        "error reading ulimit settings",
        jsonShapes.objectList("[]*units.Ulimit"),
      )
    : null;
  const buildArgs = q.get("buildargs")
    ? parseJsonParam<Record<string, string | null> | null>(
        q.get("buildargs") as string,
        "error reading build args",
        jsonShapes.stringMap(true),
      )
    : null;
  const labels = q.get("labels")
    ? parseJsonParam<Record<string, string | null> | null>(
        q.get("labels") as string,
        "error reading labels",
        jsonShapes.stringMap(false),
      )
    : null;
  const cacheFrom = q.get("cachefrom")
    ? parseJsonParam<string[] | null>(
        q.get("cachefrom") as string,
        "error reading cache-from",
        jsonShapes.stringList,
      )
    : null;
  const outputs =
    atLeast(apiVersion, "1.40") && q.get("outputs")
      ? parseJsonParam<Record<string, unknown>[] | null>(
          q.get("outputs") as string,
          "error reading outputs",
          jsonShapes.objectList("[]build.ImageBuildOutput"),
        )
      : null;
  const platformParam = atLeast(apiVersion, "1.32") ? (q.get("platform") ?? "") : "";
  const platform = platformParam ? parsePlatform(platformParam) : undefined;

  if (boolValue(q, "squash")) {
    throw new BuildError("invalid_parameter", "squash is only supported with experimental mode");
  }
  const remote = q.get("remote") ?? "";
  if (remote === "client-session" && version !== "2") {
    throw new BuildError(
      "invalid_parameter",
      'remote "client-session" is only supported by BuildKit (version=2), not by the classic builder',
    );
  }

  const exporterAttrs: Record<string, string> = {};
  const tagInputs = [...q.getAll("t")];
  if (outputs && outputs.length > 1) throw new BuildError("rejected", "multiple outputs not supported");
  const out = outputs?.[0];
  if (out) {
    const type = String(goField(out, "Type") ?? "");
    if (!IMAGE_EXPORTERS.has(type)) {
      throw new BuildError(
        "unsupported",
        `output type ${JSON.stringify(type)} is not supported by POST /build: results go to the image store (use type "moby" or "image", or buildx for other exporters)`,
      );
    }
    const attrs = (goField(out, "Attrs") ?? {}) as Record<string, unknown>;
    for (const [k, v] of Object.entries(attrs)) {
      if (k === "name") tagInputs.push(...String(v).split(",").filter(Boolean));
      else if (!RESERVED_ATTRS.has(k)) exporterAttrs[k] = String(v);
    }
  }

  return {
    tags: normalizeTags(tagInputs),
    dockerfile: q.get("dockerfile") || "Dockerfile",
    buildArgs: Object.fromEntries(
      Object.entries(buildArgs ?? {}).filter((e): e is [string, string] => e[1] !== null),
    ),
    labels: Object.fromEntries(Object.entries(labels ?? {}).map(([k, v]) => [k, v ?? ""])),
    target: q.get("target") || undefined,
    noCache: boolValue(q, "nocache"),
    pull: boolValue(q, "pull"),
    cacheFrom: cacheFrom ?? [],
    platform,
    network: networkMode(q.get("networkmode") ?? ""),
    extraHosts: q.getAll("extrahosts").map(extraHost),
    shmSize,
    ulimits: (ulimits ?? []).filter((u) => u !== null).map(ulimit),
    exporterAttrs,
    quiet: boolValue(q, "q"),
    remote,
    version: version === "2" ? "2" : "1",
    session: q.get("session") ?? "",
    buildId: q.get("buildid") ?? "",
    credentials: registryConfig ? decodeRegistryConfig(registryConfig) : {},
  };
}

/** Normalised, deduplicated, `latest` added; a digest or a bad reference is a bad parameter (400). */
function normalizeTags(inputs: string[]): string[] {
  const out = new Set<string>();
  for (const t of inputs) {
    if (t === "") continue;
    let ref: ReturnType<typeof parseNormalizedTagged>;
    try {
      ref = parseNormalizedTagged(t);
    } catch (err) {
      throw new BuildError("invalid_parameter", `invalid tag ${JSON.stringify(t)}: ${errorMessage(err)}`, {
        cause: err,
      });
    }
    if (ref.digest) throw new BuildError("invalid_parameter", "build tag cannot contain a digest");
    out.add(formatReference(ref));
  }
  return [...out];
}

/**
 * BuildKit's force-network-mode: "" and "default" are the step network
 * ("sandbox": only the egress proxy is reachable), none is lo only, host is
 * refused by the entitlement policy.
 */
function networkMode(mode: string): "sandbox" | "none" | "host" {
  if (mode === "" || mode === "default") return "sandbox";
  if (mode === "none") return "none";
  if (mode === "host") return "host";
  throw new BuildError("rejected", `network mode ${JSON.stringify(mode)} not supported by buildkit`);
}

/** `host:ip` → `host=ip` (dockerd's toBuildkitExtraHosts); no host gateway exists in the sandbox. */
function extraHost(h: string): string {
  const i = h.indexOf(":");
  const host = i < 0 ? "" : h.slice(0, i);
  const ip = i < 0 ? "" : h.slice(i + 1);
  if (!host || !ip) throw new BuildError("rejected", `invalid host ${h}`);
  if (ip === "host-gateway") {
    throw new BuildError(
      "unsupported",
      `extra host ${h}: builds run without a network, there is no host gateway`,
    );
  }
  return `${host}=${ip}`;
}

function ulimit(u: Record<string, unknown>): string {
  const name = String(goField(u, "Name") ?? "");
  const soft = Number(goField(u, "Soft") ?? 0);
  const hard = Number(goField(u, "Hard") ?? 0);
  return `${name}=${soft}:${hard}`;
}

/** X-Registry-Config: base64 (URL alphabet) JSON of map[registry]AuthConfig; decode failures are ignored, as in dockerd. */
export function decodeRegistryConfig(header: string): Record<string, { username: string; secret: string }> {
  const out: Record<string, { username: string; secret: string }> = {};
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(header, "base64url").toString("utf8"));
  } catch {
    return out;
  }
  if (!parsed || typeof parsed !== "object") return out;
  for (const [registry, raw] of Object.entries(parsed as Record<string, unknown>)) {
    if (!raw || typeof raw !== "object") continue;
    const a = raw as Record<string, unknown>;
    const str = (k: string) => {
      const v = goField(a, k);
      return typeof v === "string" ? v : "";
    };
    let username = str("username");
    let secret = str("password");
    const auth = str("auth");
    if (!username && !secret && auth) {
      const decoded = Buffer.from(auth, "base64").toString("utf8");
      const c = decoded.indexOf(":");
      if (c > 0) {
        username = decoded.slice(0, c);
        secret = decoded.slice(c + 1);
      }
    }
    // An identity token is a refresh token, sent with an empty user name (as docker's credential flow does).
    const token = str("identitytoken");
    if (token) {
      username = "";
      secret = token;
    }
    if (secret) out[str("serveraddress") || registry] = { username, secret };
  }
  return out;
}
