import { existsSync } from "node:fs";
import { readFile, realpath } from "node:fs/promises";
import path from "node:path";
import { hostPlatform } from "../../images/index.js";
import { throwIfAborted } from "../../util/index.js";
import { buildkitdConfig, CNI_CONFIG, STEP_FIREWALL } from "../buildkitd-config.js";
import { SandboxError } from "../errors.js";
import {
  type AssembledImage,
  type InputKey,
  readInputRecord,
  recordMatches,
  stampFiles,
  writeInputRecord,
} from "./input-record.js";
import { defaultEntrypointPath, pinnedBuildkitVersion } from "./repo-files.js";
import { planRootfs, type SandboxTools } from "./rootfs-plan.js";
import {
  createdAt,
  layoutHolding,
  sha256Hex,
  sourceDateEpochFromEnv,
  writeSingleLayerImage,
} from "./single-layer-image.js";

/** Bump when the assembly changes in a way the inputs do not show (layout, config fields, tar details). */
export const ASSEMBLER_VERSION = 1;
/** Repository part of the image name; the tag is the BuildKit version. */
export const SANDBOX_IMAGE_REPOSITORY = "arca-buildkit";
/** Where the sandbox reaches Arca's registry: the proxy's reverse rule listens here inside the sandbox. */
/** Arca's registry endpoint inside the sandbox: off 5000, the port people give a local registry. */
export const SANDBOX_REGISTRY_HOST = "127.0.0.1:5991";
/**
 * Level 1: the layer is mostly Go binaries; measured here level 6 took 2.3 s against 1.1 s for an 8 %
 * smaller blob, and the image is only ever read from local disk.
 */
const GZIP_LEVEL = 1;

export interface AssembleSandboxImageOptions {
  /** Arca data root; the layout goes to `<dataRoot>/buildkit/oci-layout`. */
  dataRoot: string;
  /** Directory with buildkitd, buildctl, arca-proxy and runc (a symlink to Debian's runc is fine). */
  toolsBin: string;
  signal?: AbortSignal;
  /** One line per step, and a summary line at the end. */
  onProgress?: (line: string) => void;
  /** Default: BUILDKIT_VERSION from scripts/versions.env. */
  buildkitVersion?: string;
  /** Default: sandbox-image/entrypoint.sh of this repository. */
  entrypointPath?: string;
  /** Static busybox; default `<toolsBin>/busybox`, else /usr/bin/busybox. */
  busybox?: string;
  /** mtime of every entry and the config's `created`; default $SOURCE_DATE_EPOCH, else 0. */
  sourceDateEpoch?: number;
}

export interface SandboxImage {
  layoutDir: string;
  /** `arca-buildkit:<buildkit version>`, the layout's ref.name annotation. */
  refName: string;
  manifestDigest: string;
  configDigest: string;
  layerDigest: string;
  diffId: string;
  /** Bytes of the image's blobs in the layout (manifest + config + gzip layer). */
  size: number;
  /** Bytes of the uncompressed layer tar. */
  uncompressedSize: number;
  /** Wall time of this call. */
  ms: number;
  /** True when the layout was already up to date and nothing was written. */
  upToDate: boolean;
}

/**
 * Builds the BuildKit sandbox image as an OCI layout without any registry: one gzip layer with buildkitd,
 * buildctl, arca-proxy, runc and its libraries, busybox, the entrypoint and buildkitd.toml. Same inputs give
 * the same manifest digest; when the recorded inputs are unchanged it returns the existing image without
 * reading any tool.
 */
export async function assembleSandboxImage(opts: AssembleSandboxImageOptions): Promise<SandboxImage> {
  const started = performance.now();
  const progress = opts.onProgress ?? (() => {});
  const buildDir = path.join(opts.dataRoot, "buildkit");
  const layoutDir = path.join(buildDir, "oci-layout");
  const recordFile = path.join(buildDir, "oci-layout.inputs.json");

  const buildkitVersion = opts.buildkitVersion ?? (await pinnedBuildkitVersion());
  const refName = `${SANDBOX_IMAGE_REPOSITORY}:${buildkitVersion}`;
  const entrypointPath = opts.entrypointPath ?? defaultEntrypointPath();
  const entrypoint = await readFile(entrypointPath, "utf8").catch((err: unknown) => {
    throw new SandboxError("repo_file_missing", `cannot read ${entrypointPath}`, { cause: err });
  });
  const buildkitdToml = buildkitdConfig({ registryHost: SANDBOX_REGISTRY_HOST });
  const cniConfig = CNI_CONFIG;
  const stepFirewall = STEP_FIREWALL;
  const tools = await resolveTools(opts.toolsBin, opts.busybox);
  const platform = hostPlatform();
  const key: InputKey = {
    assembler: ASSEMBLER_VERSION,
    buildkitVersion,
    platform: `${platform.os}/${platform.architecture}`,
    sourceDateEpoch: opts.sourceDateEpoch ?? sourceDateEpochFromEnv(),
    gzipLevel: GZIP_LEVEL,
    texts: {
      entrypoint: sha256Hex(entrypoint),
      buildkitdToml: sha256Hex(buildkitdToml),
      cniConfig: sha256Hex(cniConfig),
      stepFirewall: sha256Hex(stepFirewall),
    },
    tools: { ...tools },
  };

  const record = await readInputRecord(recordFile);
  if (record && (await recordMatches(record, key)) && (await layoutHolding(layoutDir, record.image))) {
    const image = result(layoutDir, refName, record.image, started, true);
    progress(
      `sandbox image ${image.manifestDigest} up to date (${mb(image.size)}, ${image.ms.toFixed(0)} ms)`,
    );
    return image;
  }

  throwIfAborted(opts.signal);
  progress(`assembling ${refName} from ${opts.toolsBin}`);
  const plan = await planRootfs(tools, { entrypoint, buildkitdToml, cniConfig, stepFirewall }, opts.signal);
  const libs = plan.hostFiles.filter((f) => !Object.values(tools).includes(f));
  progress(`rootfs: ${plan.entries.length} entries; libraries: ${libs.join(" ") || "none"}`);
  const stamps = await stampFiles(plan.hostFiles);

  const created = createdAt(key.sourceDateEpoch);
  const assembled = await writeSingleLayerImage({
    buildDir,
    layoutDir,
    entries: plan.entries,
    mtime: key.sourceDateEpoch,
    gzipLevel: GZIP_LEVEL,
    refName,
    signal: opts.signal,
    onLayer: (layer) =>
      progress(`layer ${layer.digest} ${mb(layer.size)} (${mb(layer.uncompressedSize)} uncompressed)`),
    config: (layer) => ({
      created,
      architecture: platform.architecture,
      os: platform.os,
      config: {
        Env: ["PATH=/usr/local/bin:/usr/bin:/bin"],
        Entrypoint: ["/entrypoint.sh"],
        WorkingDir: "/",
        Volumes: { "/var/lib/buildkit": {} },
        Labels: {
          "com.arca.buildkit.version": buildkitVersion,
          "com.arca.internal": "true",
          "com.arca.role": "buildkit",
        },
        StopSignal: "SIGTERM",
      },
      rootfs: { type: "layers", diff_ids: [layer.diffId] },
      history: [{ created, created_by: `arca sandbox image (BuildKit ${buildkitVersion})` }],
    }),
  });
  await writeInputRecord(recordFile, { key, files: stamps, image: assembled });
  const image = result(layoutDir, refName, assembled, started, false);
  progress(`sandbox image ${image.manifestDigest} ${mb(image.size)} in ${(image.ms / 1000).toFixed(1)} s`);
  return image;
}

/** Resolves every tool to a real file, so the record notices when a symlink is re-pointed. */
async function resolveTools(toolsBin: string, busybox: string | undefined): Promise<SandboxTools> {
  const tool = async (name: string, file = path.join(toolsBin, name)): Promise<string> => {
    try {
      return await realpath(file);
    } catch (err) {
      throw new SandboxError("tool_missing", `${name} not found at ${file}: run \`npm run setup\``, {
        cause: err,
      });
    }
  };
  const defaultBusybox = existsSync(path.join(toolsBin, "busybox"))
    ? path.join(toolsBin, "busybox")
    : "/usr/bin/busybox";
  return {
    buildkitd: await tool("buildkitd"),
    buildctl: await tool("buildctl"),
    proxy: await tool("arca-proxy"),
    runc: await tool("runc"),
    busybox: await tool("busybox", busybox ?? defaultBusybox),
    cniLoopback: await tool("cni-loopback"),
    cniBridge: await tool("cni-bridge"),
    cniHostLocal: await tool("cni-host-local"),
    nft: await tool("nft"),
    caCertificates: await tool("ca-certificates", "/etc/ssl/certs/ca-certificates.crt"),
  };
}

function result(
  layoutDir: string,
  refName: string,
  img: AssembledImage,
  started: number,
  upToDate: boolean,
): SandboxImage {
  return {
    layoutDir,
    refName,
    manifestDigest: img.manifestDigest,
    configDigest: img.configDigest,
    layerDigest: img.digest,
    diffId: img.diffId,
    size: img.manifestSize + img.configSize + img.size,
    uncompressedSize: img.uncompressedSize,
    ms: performance.now() - started,
    upToDate,
  };
}

function mb(bytes: number): string {
  return `${(bytes / 1e6).toFixed(1)} MB`;
}
