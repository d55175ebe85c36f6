import { readFile } from "node:fs/promises";
import os from "node:os";
import { parseAddress, type TlsFiles } from "../transport/index.js";
import { BackendError } from "./errors.js";

/** The built-in sandbox's name in the pool. */
export const DEFAULT_BACKEND = "default";
/** The address of a backend that is one more local sandbox. */
export const SANDBOX_ADDRESS = "sandbox";

/** One backend as configured: the built-in sandbox, another local sandbox, or a remote buildkitd. */
export interface BackendSpec {
  name: string;
  /** `sandbox`, `tcp://host:port` (mutual TLS), `unix://…` or `vsock-uds://…:port`. */
  address: string;
  tls?: TlsFiles;
  /** Share of the keys relative to the others (rendezvous weight); default 1. */
  weight: number;
  /** Builds at once before new ones spill to the next backend; default the host's CPU count. */
  maxBuilds: number;
  /**
   * host:port under which this buildkitd reaches Arca's registry endpoint (remote backends:
   * the daemon's --registry-listen address as seen from there).
   */
  registry?: string;
}

const NAME = /^[a-z0-9][a-z0-9_.-]{0,62}$/;

/** `NAME=ADDR[,ca=…,cert=…,key=…,weight=N,max=N,registry=HOST:PORT]` (arca daemon --backend). */
export function parseBackendFlag(flag: string): BackendSpec {
  const eq = flag.indexOf("=");
  if (eq <= 0)
    throw new BackendError("invalid_config", `--backend takes NAME=ADDR[,option=value…], got "${flag}"`);
  const [address = "", ...opts] = flag.slice(eq + 1).split(",");
  const fields: Record<string, string> = { name: flag.slice(0, eq), address };
  for (const o of opts) {
    const i = o.indexOf("=");
    if (i <= 0)
      throw new BackendError("invalid_config", `--backend ${fields.name}: option "${o}" is not key=value`);
    fields[o.slice(0, i)] = o.slice(i + 1);
  }
  return backendSpec(fields, `--backend ${fields.name}`);
}

/** `{"backends": [{"name", "address", "ca", "cert", "key", "weight", "max", "registry"}]}`. */
export async function readBackendsFile(file: string): Promise<BackendSpec[]> {
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw new BackendError("invalid_config", `cannot read ${file}: ${(err as Error).message}`);
  }
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    throw new BackendError("invalid_config", `${file}: ${(err as Error).message}`);
  }
  const list = (doc as { backends?: unknown })?.backends;
  if (!Array.isArray(list)) throw new BackendError("invalid_config", `${file}: expected {"backends": [...]}`);
  return list.map((entry, i) => {
    if (typeof entry !== "object" || entry === null)
      throw new BackendError("invalid_config", `${file}: backends[${i}] is not an object`);
    const fields: Record<string, string> = {};
    for (const [k, v] of Object.entries(entry)) {
      if (typeof v !== "string" && typeof v !== "number")
        throw new BackendError("invalid_config", `${file}: backends[${i}].${k} must be a string or number`);
      fields[k] = String(v);
    }
    return backendSpec(fields, `${file}: backends[${i}]`);
  });
}

const KNOWN = new Set(["name", "address", "ca", "cert", "key", "weight", "max", "registry"]);

function backendSpec(f: Record<string, string>, where: string): BackendSpec {
  for (const k of Object.keys(f))
    if (!KNOWN.has(k)) throw new BackendError("invalid_config", `${where}: unknown option "${k}"`);
  const name = f.name ?? "";
  if (!NAME.test(name))
    throw new BackendError("invalid_config", `${where}: name "${name}" must match ${NAME.source}`);
  const address = f.address ?? "";
  const tls: TlsFiles = {};
  if (f.ca) tls.ca = f.ca;
  if (f.cert) tls.cert = f.cert;
  if (f.key) tls.key = f.key;
  const hasTls = Object.keys(tls).length > 0;
  if (address === SANDBOX_ADDRESS) {
    if (hasTls || f.registry)
      throw new BackendError("invalid_config", `${where}: a local sandbox takes no ca/cert/key/registry`);
  } else {
    if (name === DEFAULT_BACKEND)
      throw new BackendError(
        "invalid_config",
        `${where}: "${DEFAULT_BACKEND}" is the built-in sandbox (address sandbox)`,
      );
    let scheme: string;
    try {
      scheme = parseAddress(address).scheme;
    } catch (err) {
      throw new BackendError("invalid_config", `${where}: ${(err as Error).message}`);
    }
    if (scheme === "tcp" && !(tls.ca && tls.cert && tls.key))
      throw new BackendError(
        "invalid_config",
        `${where}: a tcp:// backend needs mutual TLS (ca=, cert= and key=): BuildKit's API gives whoever reaches it the builder`,
      );
    if (scheme !== "tcp" && hasTls)
      throw new BackendError("invalid_config", `${where}: TLS options need a tcp:// address`);
    if (!f.registry)
      throw new BackendError(
        "invalid_config",
        `${where}: a remote backend needs registry=HOST:PORT, the daemon's --registry-listen address as that buildkitd reaches it (results come home through it)`,
      );
  }
  return {
    name,
    address,
    ...(hasTls ? { tls } : {}),
    weight: positive(f.weight, 1, `${where}: weight`),
    maxBuilds: positive(f.max, os.availableParallelism(), `${where}: max`),
    ...(f.registry ? { registry: f.registry } : {}),
  };
}

function positive(v: string | undefined, fallback: number, what: string): number {
  if (v === undefined || v === "") return fallback;
  if (!/^\d+$/.test(v) || Number(v) < 1)
    throw new BackendError("invalid_config", `${what} must be a whole number ≥ 1, got "${v}"`);
  return Number(v);
}

/**
 * The pool's backends: the built-in sandbox first (named `default`, settings overridable), then
 * the file's entries, then the flags'; a name given twice is an error.
 */
export function mergeBackendSpecs(fromFile: BackendSpec[], fromFlags: BackendSpec[]): BackendSpec[] {
  const out: BackendSpec[] = [
    { name: DEFAULT_BACKEND, address: SANDBOX_ADDRESS, weight: 1, maxBuilds: os.availableParallelism() },
  ];
  const seen = new Set<string>();
  for (const spec of [...fromFile, ...fromFlags]) {
    if (seen.has(spec.name))
      throw new BackendError("invalid_config", `backend "${spec.name}" is configured twice`);
    seen.add(spec.name);
    if (spec.name === DEFAULT_BACKEND) out[0] = spec;
    else out.push(spec);
  }
  return out;
}
