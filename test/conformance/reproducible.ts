import { spawn } from "node:child_process";
import { readFile } from "node:fs/promises";
import http from "node:http";
import path from "node:path";
import { buildctlArgs, dockerBuildFlags, exec, type PreparedCase } from "./runners.js";

/** Config and manifest digest of one build. */
export interface ImageDigests {
  config: string;
  manifest: string;
}

/** Fixed epoch for the reproducibility check (2023-11-14T22:13:20Z). */
export const EPOCH = "1700000000";

/**
 * Exporter attributes both sides get. Without rewrite-timestamp BuildKit keeps
 * the real mtimes of files RUN steps write, so no two builds share a layer
 * digest, whoever drives them (see BuildKit's docs/build-repro.md).
 */
const REWRITE = { "rewrite-timestamp": "true" };

function request(
  socket: string,
  method: string,
  urlPath: string,
  body?: NodeJS.ReadableStream,
): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      { socketPath: socket, method, path: urlPath, headers: { "Content-Type": "application/x-tar" } },
      (res) => {
        let text = "";
        res.setEncoding("utf8");
        res.on("data", (c: string) => {
          text += c;
        });
        res.on("end", () =>
          (res.statusCode ?? 0) < 300 ? resolve(text) : reject(new Error(`${res.statusCode}: ${text}`)),
        );
        res.on("error", reject);
      },
    );
    req.on("error", reject);
    if (body) body.pipe(req);
    else req.end();
  });
}

/** Whether the case's Dockerfile is inside its context (the raw API check needs it there). */
export function dockerfileInContext(c: PreparedCase): boolean {
  return !path.relative(c.context, c.dockerfile).startsWith("..");
}

/**
 * (a) with SOURCE_DATE_EPOCH: POST /build on Arca's API, as a client would
 * send it (context tar in the body, `outputs` carrying rewrite-timestamp,
 * API ≥ 1.40); the legacy docker CLI cannot send `outputs`.
 */
export async function arcaApiDigests(socket: string, c: PreparedCase, tag: string): Promise<ImageDigests> {
  const q = new URLSearchParams({
    t: tag,
    dockerfile: path.relative(c.context, c.dockerfile),
    buildargs: JSON.stringify({ ...c.spec.buildArgs, SOURCE_DATE_EPOCH: EPOCH }),
    labels: JSON.stringify(c.spec.labels ?? {}),
    outputs: JSON.stringify([{ Type: "moby", Attrs: REWRITE }]),
  });
  if (c.spec.target) q.set("target", c.spec.target);
  if (c.spec.platform) q.set("platform", c.spec.platform);
  const tarProc = spawn("tar", ["-c", "-C", c.context, "."], { stdio: ["ignore", "pipe", "inherit"] });
  const text = await request(socket, "POST", `/v1.51/build?${q}`, tarProc.stdout);
  let id: string | undefined;
  for (const line of text.split("\n")) {
    if (!line.trim()) continue;
    const m = JSON.parse(line) as { aux?: { ID?: string }; error?: string };
    if (m.error) throw new Error(`POST /build failed: ${m.error}`);
    if (m.aux?.ID) id = m.aux.ID;
  }
  if (!id) throw new Error(`POST /build gave no image ID:\n${text.slice(-2000)}`);
  const inspect = JSON.parse(
    await request(socket, "GET", `/v1.51/images/${encodeURIComponent(tag)}/json`),
  ) as {
    RepoDigests?: string[];
  };
  const manifest = inspect.RepoDigests?.[0]?.split("@")[1];
  if (!manifest) throw new Error(`no RepoDigests for ${tag}`);
  return { config: id, manifest };
}

async function metadataDigests(file: string): Promise<ImageDigests> {
  const meta = JSON.parse(await readFile(file, "utf8")) as Record<string, string>;
  const config = meta["containerimage.config.digest"];
  const manifest = meta["containerimage.digest"];
  if (!config || !manifest) throw new Error(`no image digests in ${file}`);
  return { config, manifest };
}

/** (c) with SOURCE_DATE_EPOCH: buildctl, OCI tar output with the same exporter attributes. */
export async function buildctlDigests(
  buildctl: string,
  addr: string,
  c: PreparedCase,
  scratch: string,
): Promise<ImageDigests> {
  const meta = path.join(scratch, "buildctl-metadata.json");
  // Arca's store keeps layers uncompressed (storeExportCompression): the reference exports the
  // same encoding, so the digests compare the builds, not two compressors.
  const attrs = Object.entries({ ...REWRITE, compression: "uncompressed" }).map(([k, v]) => `${k}=${v}`);
  await exec(
    buildctl,
    [
      "--addr",
      addr,
      ...buildctlArgs(c),
      "--opt",
      `build-arg:SOURCE_DATE_EPOCH=${EPOCH}`,
      "--output",
      ["type=oci", `dest=${path.join(scratch, "repro.oci.tar")}`, ...attrs].join(","),
      "--metadata-file",
      meta,
    ],
    process.env,
  );
  return metadataDigests(meta);
}

/**
 * (b) with SOURCE_DATE_EPOCH: buildx through Arca's /grpc, image output with
 * the same attributes. No provenance attestation (buildx adds one by default,
 * which wraps the manifest in an index); the docker driver reports the image
 * ID as containerimage.digest and the manifest in containerimage.descriptor.
 */
export async function buildxDigests(
  socket: string,
  dockerConfig: string,
  c: PreparedCase,
  tag: string,
  scratch: string,
): Promise<ImageDigests> {
  const meta = path.join(scratch, "buildx-metadata.json");
  const attrs = Object.entries(REWRITE).map(([k, v]) => `${k}=${v}`);
  const args = ["buildx", "build", "-q", "--provenance=false", "--sbom=false", ...dockerBuildFlags(c)];
  args.push("--build-arg", `SOURCE_DATE_EPOCH=${EPOCH}`);
  for (const [id, src] of Object.entries(c.secrets)) args.push("--secret", `id=${id},src=${src}`);
  args.push(
    "--output",
    ["type=image", `name=${tag}`, ...attrs].join(","),
    "--metadata-file",
    meta,
    c.context,
  );
  await exec("docker", args, {
    ...process.env,
    DOCKER_HOST: `unix://${socket}`,
    DOCKER_CONFIG: dockerConfig,
  });
  const m = JSON.parse(await readFile(meta, "utf8")) as {
    "containerimage.config.digest"?: string;
    "containerimage.digest"?: string;
    "containerimage.descriptor"?: { digest?: string };
  };
  const config = m["containerimage.config.digest"] ?? m["containerimage.digest"];
  const manifest = m["containerimage.descriptor"]?.digest;
  if (!config || !manifest) throw new Error(`no image digests in ${meta}`);
  return { config, manifest };
}
