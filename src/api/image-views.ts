import type { Digest, ImageConfig, ImageStore, ImageSummary } from "../images/index.js";
import { versionAtLeast } from "./version.js";

/** What dockerd's `Config` (DockerOCIImageConfig) always carried on API 1.50–1.51, and more before. */
const LEGACY_CONFIG_FIELDS: Record<string, Record<string, unknown>> = {
  "1.50": {
    Cmd: null,
    Entrypoint: null,
    Env: null,
    Labels: null,
    OnBuild: null,
    User: "",
    Volumes: null,
    WorkingDir: "",
  },
  "1.49": {
    AttachStderr: false,
    AttachStdin: false,
    AttachStdout: false,
    Cmd: null,
    Domainname: "",
    Entrypoint: null,
    Env: null,
    Hostname: "",
    Image: "",
    Labels: null,
    OnBuild: null,
    OpenStdin: false,
    StdinOnce: false,
    Tty: false,
    User: "",
    Volumes: null,
    WorkingDir: "",
  },
};

const ZERO_TIME = "0001-01-01T00:00:00Z";

export const unixSeconds = (iso: string | null | undefined): number => {
  const t = iso ? Date.parse(iso) : Number.NaN;
  return Number.isNaN(t) ? 0 : Math.floor(t / 1000);
};

export function labelsOf(config: ImageConfig): Record<string, string> | null {
  const labels = config.config?.Labels;
  return labels && typeof labels === "object" ? (labels as Record<string, string>) : null;
}

/** One `GET /images/json` entry (image.Summary) for an API version. */
export function summaryJSON(
  s: ImageSummary,
  config: ImageConfig,
  opts: {
    apiVersion: string;
    repoTags: string[];
    repoDigests: string[];
    containers: number;
    sharedSize: number;
    descriptor: { mediaType: string; digest: Digest; size: number };
  },
): Record<string, unknown> {
  const { apiVersion } = opts;
  let { repoTags, repoDigests } = opts;
  if (!versionAtLeast(apiVersion, "1.43") && repoTags.length === 0 && repoDigests.length === 0) {
    repoTags = ["<none>:<none>"];
    repoDigests = ["<none>@<none>"];
  }
  return {
    Containers: versionAtLeast(apiVersion, "1.51") ? opts.containers : -1,
    Created: unixSeconds(s.created),
    Id: s.id,
    Labels: labelsOf(config),
    ParentId: "",
    ...(versionAtLeast(apiVersion, "1.48") ? { Descriptor: opts.descriptor } : {}),
    RepoDigests: repoDigests,
    RepoTags: repoTags,
    SharedSize: opts.sharedSize,
    Size: s.size,
    ...(versionAtLeast(apiVersion, "1.44") ? {} : { VirtualSize: s.size }),
  };
}

/** `GET /images/{name}/json` (image.InspectResponse with dockerd's per-version compatibility fields). */
export async function inspectJSON(
  store: ImageStore,
  nameOrId: string,
  apiVersion: string,
): Promise<Record<string, unknown>> {
  const resolved = store.resolve(nameOrId);
  const info = await store.inspect(resolved.image.id);
  const config = info.ImageConfig;
  const history = Array.isArray(config.history) ? config.history : [];
  const comment =
    (typeof config.comment === "string" && config.comment) ||
    String(history[history.length - 1]?.comment ?? "");
  const legacy = LEGACY_CONFIG_FIELDS[versionAtLeast(apiVersion, "1.50") ? "1.50" : "1.49"];
  const lastTag = store.lastTagTime(info.Id);
  const manifestRow = store.getManifest(resolved.digest);
  const created = info.Created ?? (versionAtLeast(apiVersion, "1.44") ? undefined : ZERO_TIME);
  const out: Record<string, unknown> = {
    Id: info.Id,
    RepoTags: info.RepoTags,
    RepoDigests: info.RepoDigests,
    Parent: "",
    Comment: comment,
    ...(created ? { Created: created } : {}),
    ...(versionAtLeast(apiVersion, "1.45")
      ? {}
      : { Container: String(config.container ?? ""), ContainerConfig: config.container_config ?? null }),
    DockerVersion: String(config.docker_version ?? ""),
    Author: info.Author,
    Config: { ...legacy, ...(info.Config ?? {}) },
    Architecture: info.Architecture,
    ...(info.Variant ? { Variant: info.Variant } : {}),
    Os: info.Os,
    ...(typeof config["os.version"] === "string" ? { OsVersion: config["os.version"] } : {}),
    Size: info.Size,
    ...(versionAtLeast(apiVersion, "1.44") ? {} : { VirtualSize: info.Size }),
    GraphDriver: { Data: null, Name: "overlayfs" },
    RootFS: {
      Type: info.RootFS.Type,
      ...(info.RootFS.Layers.length > 0 ? { Layers: info.RootFS.Layers } : {}),
    },
    Metadata: { LastTagTime: lastTag ? new Date(lastTag).toISOString() : ZERO_TIME },
  };
  if (versionAtLeast(apiVersion, "1.48") && manifestRow) {
    out.Descriptor = { mediaType: manifestRow.mediaType, digest: manifestRow.digest, size: manifestRow.size };
  }
  return out;
}

/**
 * `GET /images/{name}/history` as dockerd's ImageHistory: newest first, the top entry carries the image ID
 * and its tags, older ones `<missing>` (Arca keeps no parent chain). Sizes are the layers' unpacked
 * sizes, as dockerd's; empty_layer entries are 0.
 */
export async function historyJSON(store: ImageStore, nameOrId: string): Promise<Record<string, unknown>[]> {
  const info = await store.inspect(store.resolve(nameOrId).image.id);
  const history = Array.isArray(info.ImageConfig.history) ? info.ImageConfig.history : [];
  const items: Record<string, unknown>[] = [];
  const sizes = await store.unpackedLayerSizes(info.Layers);
  let layer = 0;
  for (const h of history) {
    let size = 0;
    if (h.empty_layer !== true) {
      size = sizes[layer] ?? 0;
      layer++;
    }
    items.unshift({
      Comment: String(h.comment ?? ""),
      Created: unixSeconds(typeof h.created === "string" ? h.created : null),
      CreatedBy: String(h.created_by ?? ""),
      Id: "<missing>",
      Size: size,
      Tags: null,
    });
  }
  const top = items[0];
  if (top) {
    top.Id = info.Id;
    top.Tags = info.RepoTags.length > 0 ? info.RepoTags : null;
  }
  return items;
}
