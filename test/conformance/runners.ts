import { execFile } from "node:child_process";
import path from "node:path";
import { promisify } from "node:util";
import type { CaseSpec, RunnerId } from "./case-spec.js";

const run = promisify(execFile);

/** A case ready to build: its setup applied in a temp copy. */
export interface PreparedCase {
  name: string;
  /** Absolute context directory. */
  context: string;
  /** Absolute Dockerfile path (may lie outside the context). */
  dockerfile: string;
  spec: CaseSpec;
  /** Secret id → absolute file. */
  secrets: Record<string, string>;
}

/** One way of building an image; writes the result as an image archive (docker save or OCI layout tar). */
export interface Runner {
  id: RunnerId;
  build(c: PreparedCase, archive: string, signal?: AbortSignal): Promise<void>;
}

/** Runs a command; on failure the error carries its output (what a failing build printed). */
export async function exec(
  cmd: string,
  args: string[],
  env: NodeJS.ProcessEnv,
  signal?: AbortSignal,
): Promise<string> {
  try {
    const r = await run(cmd, args, { env, maxBuffer: 64 << 20, signal });
    return r.stdout;
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string; message: string };
    const out = `${e.stdout ?? ""}${e.stderr ?? ""}`.trim().split("\n").slice(-25).join("\n");
    throw new Error(`${path.basename(cmd)} ${args.slice(0, 2).join(" ")} failed:\n${out || e.message}`);
  }
}

/** `docker build` flags for a case (shared by the classic and buildx runners). */
export function dockerBuildFlags(c: PreparedCase): string[] {
  const args = ["-f", c.dockerfile];
  for (const [k, v] of Object.entries(c.spec.buildArgs ?? {})) args.push("--build-arg", `${k}=${v}`);
  for (const [k, v] of Object.entries(c.spec.labels ?? {})) args.push("--label", `${k}=${v}`);
  if (c.spec.target) args.push("--target", c.spec.target);
  if (c.spec.platform) args.push("--platform", c.spec.platform);
  return args;
}

function imageTag(c: PreparedCase, runner: RunnerId): string {
  return `conformance/${c.name.toLowerCase()}:${runner}`;
}

/**
 * `DOCKER_BUILDKIT=0 docker build` (legacy CLI path, POST /build version=1)
 * against a daemon's socket, then `docker save`. Serves both Arca (a) and the
 * stock dockerd (d).
 */
export function classicRunner(
  id: "arca-classic" | "dockerd-classic",
  socket: string,
  dockerConfig: string,
): Runner {
  const env = {
    ...process.env,
    DOCKER_HOST: `unix://${socket}`,
    DOCKER_CONFIG: dockerConfig,
    DOCKER_BUILDKIT: "0",
  };
  return {
    id,
    async build(c, archive, signal) {
      const tag = imageTag(c, id);
      await exec("docker", ["build", "-q", "-t", tag, ...dockerBuildFlags(c), c.context], env, signal);
      await exec("docker", ["save", "-o", archive, tag], env, signal);
    },
  };
}

/** `docker buildx build` against Arca's daemon (docker driver: POST /session + /grpc), then `docker save` (b). */
export function buildxRunner(socket: string, dockerConfig: string): Runner {
  const env = { ...process.env, DOCKER_HOST: `unix://${socket}`, DOCKER_CONFIG: dockerConfig };
  return {
    id: "arca-buildx",
    async build(c, archive, signal) {
      const tag = imageTag(c, "arca-buildx");
      const args = ["buildx", "build", "-q", "--load", "-t", tag, ...dockerBuildFlags(c)];
      for (const [id, src] of Object.entries(c.secrets)) args.push("--secret", `id=${id},src=${src}`);
      await exec("docker", [...args, c.context], env, signal);
      await exec("docker", ["save", "-o", archive, tag], env, signal);
    },
  };
}

/** buildctl's dockerfile.v0 options for a case (what `docker build` flags map to). */
export function buildctlArgs(c: PreparedCase): string[] {
  const args = [
    "build",
    "--frontend",
    "dockerfile.v0",
    "--local",
    `context=${c.context}`,
    "--local",
    `dockerfile=${path.dirname(c.dockerfile)}`,
    "--opt",
    `filename=${path.basename(c.dockerfile)}`,
  ];
  for (const [k, v] of Object.entries(c.spec.buildArgs ?? {})) args.push("--opt", `build-arg:${k}=${v}`);
  for (const [k, v] of Object.entries(c.spec.labels ?? {})) args.push("--opt", `label:${k}=${v}`);
  if (c.spec.target) args.push("--opt", `target=${c.spec.target}`);
  if (c.spec.platform) args.push("--opt", `platform=${c.spec.platform}`);
  for (const [id, src] of Object.entries(c.secrets)) args.push("--secret", `id=${id},src=${src}`);
  return args;
}

/** buildctl straight against the buildkitd Arca uses (c), exporting an OCI layout tar. */
export function buildctlRunner(buildctl: string, addr: string): Runner {
  return {
    id: "buildctl",
    async build(c, archive, signal) {
      await exec(
        buildctl,
        ["--addr", addr, ...buildctlArgs(c), "--output", `type=oci,dest=${archive}`],
        process.env,
        signal,
      );
    },
  };
}
