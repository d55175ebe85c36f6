import type { ContainerInspect, ContainerRecord } from "../runtime/index.js";
import { matchAny, matchLabels, regexMatch } from "./container-filters.js";
import { networks } from "./container-inspect.js";
import { ApiError } from "./errors.js";
import type { Filters } from "./query-params.js";

/** Containers carrying this label are Arca's own (the BuildKit sandbox): never listed. */
export const INTERNAL_LABEL = "com.arca.internal";

export function isInternal(c: ContainerInspect): boolean {
  return c.Config.Labels[INTERNAL_LABEL] === "true";
}

/** isInternal for a runtime record (no inspect needed). */
export function isInternalRecord(c: ContainerRecord): boolean {
  return c.spec.labels?.[INTERNAL_LABEL] === "true";
}

/** The filters `GET /containers/json` accepts (as dockerd; the ones Arca cannot apply are accepted and ignored). */
export const CONTAINER_FILTERS = [
  "ancestor",
  "before",
  "exited",
  "expose",
  "health",
  "id",
  "isolation",
  "is-task",
  "label",
  "name",
  "network",
  "publish",
  "since",
  "status",
  "volume",
] as const;

const STATUSES = ["created", "restarting", "running", "removing", "paused", "exited", "dead"];

/** Throws dockerd's errors for filter values it validates. */
export function validateContainerFilters(f: Filters): void {
  for (const s of f.get("status") ?? [])
    if (!STATUSES.includes(s)) throw new ApiError("invalid_parameter", `Invalid filter 'status=${s}'`);
  for (const e of f.get("exited") ?? [])
    if (!/^-?\d+$/.test(e)) throw new ApiError("invalid_parameter", `invalid filter 'exited=${e}'`);
}

export function matchesContainer(c: ContainerInspect, f: Filters): boolean {
  const name = c.Name;
  return (
    matchAny(f, "id", (v) => c.Id.startsWith(v)) &&
    matchAny(f, "name", (v) => regexMatch(v, name) || regexMatch(v, name.slice(1))) &&
    matchAny(f, "status", (v) => v === c.State.Status) &&
    matchAny(f, "exited", (v) => c.State.Status === "exited" && Number(v) === c.State.ExitCode) &&
    matchAny(f, "network", (v) => v === c.HostConfig.NetworkMode) &&
    matchAny(f, "volume", (v) =>
      c.Mounts.some((m) => m.Name === v || m.Source === v || m.Destination === v),
    ) &&
    matchAny(f, "ancestor", (v) => v === c.Config.Image || c.Image.replace(/^sha256:/, "").startsWith(v)) &&
    matchLabels(f, c.Config.Labels)
  );
}

/** One entry of `GET /containers/json`, as dockerd's container.Summary. */
export function containerSummary(c: ContainerInspect, now = Date.now()): Record<string, unknown> {
  return {
    Id: c.Id,
    Names: [c.Name],
    Image: c.Config.Image,
    ImageID: c.Image,
    Command: [c.Path, ...c.Args].join(" "),
    Created: Math.floor(Date.parse(c.Created) / 1000),
    Ports: [],
    Labels: c.Config.Labels,
    State: c.State.Status,
    Status: statusText(c.State, now),
    HostConfig: { NetworkMode: c.HostConfig.NetworkMode },
    NetworkSettings: { Networks: networks(c) },
    Mounts: c.Mounts.map((m) => ({ ...m, Mode: m.Type === "volume" && !m.Mode ? "z" : m.Mode })),
  };
}

const ZERO = "0001-01-01T00:00:00Z";

/** dockerd's State.String(): "Up 5 minutes", "Exited (0) 2 minutes ago", "Created". */
export function statusText(s: ContainerInspect["State"], now = Date.now()): string {
  const since = (t: string) => humanDuration(now - Date.parse(t));
  if (s.Running) return `Up ${since(s.StartedAt)}`;
  if (s.Restarting) return `Restarting (${s.ExitCode}) ${since(s.FinishedAt)} ago`;
  if (s.StartedAt === ZERO) return "Created";
  if (s.FinishedAt === ZERO) return "";
  return `Exited (${s.ExitCode}) ${since(s.FinishedAt)} ago`;
}

/** go-units HumanDuration, which the docker CLI's users know from `docker ps`. */
export function humanDuration(ms: number): string {
  const seconds = Math.floor(ms / 1000);
  if (seconds < 1) return "Less than a second";
  if (seconds === 1) return "1 second";
  if (seconds < 60) return `${seconds} seconds`;
  const minutes = Math.floor(seconds / 60);
  if (minutes === 1) return "About a minute";
  if (minutes < 60) return `${minutes} minutes`;
  const hours = Math.floor(ms / 3_600_000 + 0.5);
  if (hours === 1) return "About an hour";
  if (hours < 48) return `${hours} hours`;
  if (hours < 24 * 7 * 2) return `${Math.floor(hours / 24)} days`;
  if (hours < 24 * 30 * 2) return `${Math.floor(hours / 24 / 7)} weeks`;
  if (hours < 24 * 365 * 2) return `${Math.floor(hours / 24 / 30)} months`;
  return `${Math.floor(ms / 3_600_000 / 24 / 365)} years`;
}
