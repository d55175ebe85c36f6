import { isAbsolute, posix } from "node:path";
import { normalizeCap } from "./capabilities.js";
import { RuntimeError } from "./errors.js";
import type { ContainerSpec, ResolvedProcess } from "./types.js";

const NAME_RE = /^[a-zA-Z0-9][a-zA-Z0-9_.-]+$/;
const DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
const POLICIES = new Set(["no", "always", "unless-stopped", "on-failure"]);

function bad(msg: string): RuntimeError {
  return new RuntimeError("invalid_spec", msg);
}

/** Checks a spec before anything is created; returns it with defaults filled in. */
export function validateSpec(spec: ContainerSpec): ContainerSpec {
  const name = spec.name?.startsWith("/") ? spec.name.slice(1) : spec.name;
  if (!name || !NAME_RE.test(name)) throw bad(`invalid container name ${JSON.stringify(spec.name)}`);
  if (!spec.image) throw bad("image is required");
  if (spec.networkMode !== "none" && spec.networkMode !== "host")
    throw bad(`unsupported network mode ${JSON.stringify(spec.networkMode)}`);
  const policy = spec.restartPolicy ?? { name: "no" };
  if (!POLICIES.has(policy.name)) throw bad(`invalid restart policy ${JSON.stringify(policy.name)}`);
  if (policy.maximumRetryCount && policy.name !== "on-failure")
    throw bad("maximum retry count can only be used with the on-failure restart policy");
  if ((policy.maximumRetryCount ?? 0) < 0) throw bad("maximum retry count cannot be negative");
  const targets = new Set<string>();
  for (const m of spec.mounts ?? []) {
    if (!isAbsolute(m.target) || posix.normalize(m.target) === "/")
      throw bad(`invalid mount target ${JSON.stringify(m.target)}`);
    if (targets.has(posix.normalize(m.target))) throw bad(`duplicate mount point ${m.target}`);
    targets.add(posix.normalize(m.target));
    if (m.type === "bind") {
      if (!isAbsolute(m.source))
        throw bad(`bind source must be an absolute path: ${JSON.stringify(m.source)}`);
    } else if (m.type === "volume") {
      if (!NAME_RE.test(m.source)) throw bad(`invalid volume name ${JSON.stringify(m.source)}`);
    } else throw bad(`unsupported mount type ${JSON.stringify((m as { type: string }).type)}`);
  }
  for (const c of spec.capAdd ?? []) normalizeCap(c);
  validateIsolation(spec);
  for (const e of spec.env ?? [])
    if (!e || e.startsWith("=")) throw bad(`invalid environment entry ${JSON.stringify(e)}`);
  if (spec.workingDir && !posix.isAbsolute(spec.workingDir))
    throw bad(`working directory must be absolute: ${JSON.stringify(spec.workingDir)}`);
  return { ...spec, name, restartPolicy: policy, labels: spec.labels ?? {}, mounts: spec.mounts ?? [] };
}

const SYSCALL_RE = /^[a-z0-9_]+$/;
const SYSCTL_RE = /^[a-z0-9_]+(\.[a-z0-9_-]+)+$/;
const MAX_ID = 2 ** 32 - 2;
/** Docker's smallest memory limit. */
const MIN_MEMORY = 6 * 1024 * 1024;

/** User namespace, seccomp, sysctls and cgroup limits (the sandbox's least-privilege settings). */
function validateIsolation(spec: ContainerSpec): void {
  const u = spec.userns;
  if (u) {
    if (spec.privileged) throw bad("a privileged container cannot have a user namespace mapping");
    if (!Number.isInteger(u.hostId) || !Number.isInteger(u.size) || u.hostId < 1 || u.size < 1)
      throw bad(`invalid user namespace mapping ${JSON.stringify(u)}`);
    if (u.hostId + u.size > MAX_ID)
      throw bad(`user namespace mapping beyond the id range: ${JSON.stringify(u)}`);
    if (spec.networkMode !== "none")
      throw bad('a user namespace needs a network namespace of its own (network mode "none")');
  }
  const sc = spec.seccomp;
  if (sc !== undefined && sc !== "unconfined") {
    for (const n of [...(sc.allow ?? []), ...(sc.enosys ?? [])])
      if (!SYSCALL_RE.test(n)) throw bad(`invalid syscall name ${JSON.stringify(n)}`);
  }
  for (const [k, v] of Object.entries(spec.sysctls ?? {})) {
    if (!SYSCTL_RE.test(k) || typeof v !== "string" || !v || /[\n\0]/.test(v))
      throw bad(`invalid sysctl ${JSON.stringify(k)}=${JSON.stringify(v)}`);
    // Only what the container's own namespaces own; anything else would change the host.
    if (!k.startsWith("net.") && !k.startsWith("kernel.shm") && !k.startsWith("kernel.msg"))
      throw bad(`sysctl ${k} is not namespaced`);
    if (k.startsWith("net.") && spec.networkMode !== "none")
      throw bad(`sysctl ${k} needs a network namespace of its own (network mode "none")`);
  }
  if (spec.pidsLimit !== undefined && (!Number.isInteger(spec.pidsLimit) || spec.pidsLimit < 1))
    throw bad(`invalid pids limit ${spec.pidsLimit}`);
  if (spec.memory !== undefined && (!Number.isSafeInteger(spec.memory) || spec.memory < MIN_MEMORY))
    throw bad(`invalid memory limit ${spec.memory}: the minimum is 6 MiB`);
}

/** Merges the image config with the spec the way Docker does (an entrypoint override drops the image Cmd). */
export function resolveProcess(
  spec: ContainerSpec,
  imageConfig: Record<string, unknown> | null,
): ResolvedProcess {
  const cfg = imageConfig ?? {};
  const strings = (v: unknown): string[] | undefined =>
    Array.isArray(v) && v.every((x) => typeof x === "string") ? (v as string[]) : undefined;
  const entrypoint = spec.entrypoint ?? strings(cfg.Entrypoint) ?? [];
  const cmd = spec.cmd ?? (spec.entrypoint ? [] : (strings(cfg.Cmd) ?? []));
  const args = [...entrypoint, ...cmd];
  const [path, ...rest] = args;
  if (!path) throw bad("no command specified");
  const env = mergeEnv(strings(cfg.Env) ?? [], spec.env ?? []);
  if (!env.some((e) => e.startsWith("PATH="))) env.unshift(DEFAULT_PATH);
  const workingDir = spec.workingDir || (typeof cfg.WorkingDir === "string" && cfg.WorkingDir) || "/";
  const user = spec.user ?? (typeof cfg.User === "string" ? cfg.User : "");
  return { path, args: rest, entrypoint, cmd, env, workingDir, user };
}

function mergeEnv(base: string[], overrides: string[]): string[] {
  const out = new Map<string, string>();
  for (const e of [...base, ...overrides]) {
    const i = e.indexOf("=");
    out.set(i < 0 ? e : e.slice(0, i), e);
  }
  return [...out.values()];
}
