import { execFile } from "node:child_process";
import { realpath, stat } from "node:fs/promises";
import path from "node:path";
import { promisify } from "node:util";
import { formatReference, hostPlatform, type ImageStore, parseNormalizedTagged } from "../../images/index.js";
import { throwIfAborted } from "../../util/index.js";
import { SandboxError } from "../errors.js";
import { frontendTags, parseFrontendVersion } from "./frontend-version.js";
import {
  type AssembledImage,
  type InputKey,
  readInputRecord,
  recordMatches,
  stampFiles,
  writeInputRecord,
} from "./input-record.js";
import { loadSandboxImage } from "./load.js";
import { REF_NAME_ANNOTATION } from "./oci-layout.js";
import { pinnedBuildkitVersion } from "./repo-files.js";
import type { RootfsEntry } from "./rootfs-plan.js";
import {
  createdAt,
  layoutHolding,
  sha256Hex,
  sourceDateEpochFromEnv,
  writeSingleLayerImage,
} from "./single-layer-image.js";

const execFileAsync = promisify(execFile);

/** Bump when the assembly changes in a way the inputs do not show (config fields, tar details). */
export const FRONTEND_ASSEMBLER_VERSION = 1;
/** Where the binary sits in the image, as in upstream's release image (`FROM scratch`, one COPY). */
const FRONTEND_PATH = "bin/dockerfile-frontend";
/** One Go binary, read from local disk only: see GZIP_LEVEL in assemble.ts. */
const GZIP_LEVEL = 1;
/**
 * The labels of upstream's release stage (frontend/dockerfile/cmd/dockerfile-frontend/Dockerfile of the
 * pinned module): BuildKit runs a frontend labelled network.none without a network, and forwards only
 * the options the caps name (a test compares them with the module's Dockerfile).
 */
export const FRONTEND_LABELS: Readonly<Record<string, string>> = {
  "moby.buildkit.frontend.network.none": "true",
  "moby.buildkit.frontend.caps":
    "moby.buildkit.frontend.inputs,moby.buildkit.frontend.subrequests,moby.buildkit.frontend.contexts,moby.buildkit.frontend.gitquerystring",
};
/** How the config's history names an image this assembler made (older ones are replaced at start). */
const HISTORY_PREFIX = "arca: dockerfile frontend";
/** What BuildKit's dockerfile frontend puts in the config of a `FROM scratch` image. */
const DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

export interface AssembleFrontendImageOptions {
  /** Arca data root; the layout goes to `<dataRoot>/buildkit/frontend-layout`. */
  dataRoot: string;
  /** Directory with `dockerfile-frontend` (built by set-up from the pinned BuildKit module). */
  toolsBin: string;
  signal?: AbortSignal;
  onProgress?: (line: string) => void;
  /** Default: BUILDKIT_VERSION from scripts/versions.env. */
  buildkitVersion?: string;
  /** mtime of every entry and the config's `created`; default $SOURCE_DATE_EPOCH, else 0. */
  sourceDateEpoch?: number;
}

export interface FrontendImage {
  layoutDir: string;
  /** The Dockerfile version the binary reports, e.g. `1.26.0`. */
  version: string;
  /** Short names the store gives it: `docker/dockerfile:1`, `…:1.26`, `…:1.26.0`. */
  tags: string[];
  manifestDigest: string;
  configDigest: string;
  /** Bytes of manifest + config + layer. */
  size: number;
  ms: number;
  /** True when the layout was already up to date and nothing was written. */
  upToDate: boolean;
}

/**
 * Builds the Dockerfile frontend image (what `# syntax=docker/dockerfile:1` names) as an OCI layout: the
 * frontend binary set-up built from the same BuildKit module as buildkitd, in one layer, with upstream's
 * entrypoint and labels. Reproducible like the sandbox image: same inputs, same manifest digest; an
 * unchanged binary (stat) returns the existing layout without reading it.
 */
export async function assembleFrontendImage(opts: AssembleFrontendImageOptions): Promise<FrontendImage> {
  const started = performance.now();
  const progress = opts.onProgress ?? (() => {});
  const buildDir = path.join(opts.dataRoot, "buildkit");
  const layoutDir = path.join(buildDir, "frontend-layout");
  const recordFile = path.join(buildDir, "frontend-layout.inputs.json");
  const binary = await resolveFrontendBinary(opts.toolsBin);
  const platform = hostPlatform();
  const key: InputKey = {
    assembler: FRONTEND_ASSEMBLER_VERSION,
    buildkitVersion: opts.buildkitVersion ?? (await pinnedBuildkitVersion()),
    platform: `${platform.os}/${platform.architecture}`,
    sourceDateEpoch: opts.sourceDateEpoch ?? sourceDateEpochFromEnv(),
    gzipLevel: GZIP_LEVEL,
    texts: { labels: sha256Hex(JSON.stringify(FRONTEND_LABELS)) },
    tools: { dockerfileFrontend: binary },
  };

  const record = await readInputRecord(recordFile);
  if (record && (await recordMatches(record, key))) {
    const version = await layoutVersion(layoutDir, record.image);
    if (version) {
      const image = result(layoutDir, version, record.image, started, true);
      progress(`dockerfile frontend ${version} ${image.manifestDigest} up to date`);
      return image;
    }
  }

  throwIfAborted(opts.signal);
  const version = parseFrontendVersion(await frontendVersionOutput(binary, opts.signal));
  const exactTag = frontendTags(version).at(-1) as string;
  const st = await stat(binary);
  const entries: RootfsEntry[] = [
    { type: "directory", path: "bin", mode: 0o755 },
    { type: "file", path: FRONTEND_PATH, mode: 0o755, source: binary, size: st.size },
  ];
  const stamps = await stampFiles([binary]);
  const created = createdAt(key.sourceDateEpoch);
  const assembled = await writeSingleLayerImage({
    buildDir,
    layoutDir,
    entries,
    mtime: key.sourceDateEpoch,
    gzipLevel: GZIP_LEVEL,
    refName: exactTag,
    signal: opts.signal,
    config: (layer) => ({
      created,
      architecture: platform.architecture,
      os: platform.os,
      ...(platform.variant ? { variant: platform.variant } : {}),
      config: {
        Env: [DEFAULT_PATH],
        Entrypoint: [`/${FRONTEND_PATH}`],
        Labels: { ...FRONTEND_LABELS },
      },
      rootfs: { type: "layers", diff_ids: [layer.diffId] },
      history: [
        {
          created,
          created_by: `${HISTORY_PREFIX} ${version} (github.com/moby/buildkit ${key.buildkitVersion})`,
        },
      ],
    }),
  });
  await writeInputRecord(recordFile, { key, files: stamps, image: assembled });
  const image = result(layoutDir, version, assembled, started, false);
  progress(
    `dockerfile frontend ${version} ${image.manifestDigest} (${(image.size / 1e6).toFixed(1)} MB) in ${(image.ms / 1000).toFixed(1)} s`,
  );
  return image;
}

export interface LoadFrontendImageResult {
  /** Tags that were (re)pointed at the image; empty when the store already had them all. */
  loaded: string[];
  /** Tags left on an image that is not Arca's frontend (one the user pulled, loaded or built). */
  kept: string[];
  imageId: string;
}

/**
 * Puts the frontend image into the store under each of its tags, skipping tags that already point at it
 * (a start with nothing changed reads nothing). A tag removed with `docker rmi` comes back here, and one
 * still on an older Arca frontend moves to this one; a tag on any other image (the real docker/dockerfile
 * the user pulled or loaded) is left alone: as with any base image, what the user put there wins.
 */
export async function loadFrontendImage(
  store: ImageStore,
  image: FrontendImage,
  signal?: AbortSignal,
): Promise<LoadFrontendImageResult> {
  const loaded: string[] = [];
  const kept: string[] = [];
  let imageId = image.configDigest;
  for (const tag of image.tags) {
    const current = store.lookupName(formatReference(parseNormalizedTagged(tag)));
    if (current && current !== image.manifestDigest && !(await isArcaFrontend(store, current))) {
      kept.push(tag);
      continue;
    }
    const r = await loadSandboxImage(store, image.layoutDir, { name: tag, signal });
    if (r.loaded) loaded.push(tag);
    imageId = r.imageId;
  }
  return { loaded, kept, imageId };
}

/** True when the manifest is a frontend image this assembler made (its history says so). */
async function isArcaFrontend(store: ImageStore, manifestDigest: string): Promise<boolean> {
  const id = store.getManifest(manifestDigest)?.imageId;
  if (!id) return false;
  try {
    const config = await store.readConfig(id);
    const createdBy = config.history?.[0]?.created_by;
    return typeof createdBy === "string" && createdBy.startsWith(HISTORY_PREFIX);
  } catch {
    return false;
  }
}

export interface EnsureFrontendImageOptions extends AssembleFrontendImageOptions {
  store: ImageStore;
  log?: (line: string) => void;
}

/**
 * Assembles (when its inputs changed) and loads (when a tag is missing or points elsewhere) the frontend
 * image, so that BuildKit, which mirrors docker.io to Arca's registry endpoint, resolves
 * `# syntax=docker/dockerfile:1` from the store without any network.
 */
export async function ensureFrontendImage(opts: EnsureFrontendImageOptions): Promise<FrontendImage> {
  const log = opts.log ?? (() => {});
  const image = await assembleFrontendImage({ ...opts, onProgress: opts.onProgress ?? log });
  const loaded = await loadFrontendImage(opts.store, image, opts.signal);
  if (loaded.loaded.length > 0)
    log(`loaded dockerfile frontend ${loaded.imageId} as ${loaded.loaded.join(", ")}`);
  if (loaded.kept.length > 0)
    log(
      `${loaded.kept.join(", ")}: left on the image the store has under that name (Arca's is ${image.version})`,
    );
  return image;
}

async function resolveFrontendBinary(toolsBin: string): Promise<string> {
  const file = path.join(toolsBin, "dockerfile-frontend");
  try {
    return await realpath(file);
  } catch (err) {
    throw new SandboxError(
      "tool_missing",
      `dockerfile-frontend not found at ${file}: run \`npm run setup\``,
      {
        cause: err,
      },
    );
  }
}

async function frontendVersionOutput(binary: string, signal?: AbortSignal): Promise<string> {
  try {
    const { stdout } = await execFileAsync(binary, ["-version"], { timeout: 10_000, signal });
    return stdout;
  } catch (err) {
    throw new SandboxError("tool_missing", `${binary} -version failed: run \`npm run setup\``, {
      cause: err,
    });
  }
}

/** The version named by the layout's ref (`docker/dockerfile:1.26.0`) when the layout holds this image. */
async function layoutVersion(layoutDir: string, image: AssembledImage): Promise<string | undefined> {
  const ref = (await layoutHolding(layoutDir, image))?.annotations?.[REF_NAME_ANNOTATION] ?? "";
  return ref.slice(ref.lastIndexOf(":") + 1) || undefined;
}

function result(
  layoutDir: string,
  version: string,
  img: AssembledImage,
  started: number,
  upToDate: boolean,
): FrontendImage {
  return {
    layoutDir,
    version,
    tags: frontendTags(version),
    manifestDigest: img.manifestDigest,
    configDigest: img.configDigest,
    size: img.manifestSize + img.configSize + img.size,
    ms: performance.now() - started,
    upToDate,
  };
}
