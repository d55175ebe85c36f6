/** The parts of an image config a conformance check compares; empty values are dropped (null ≡ [] ≡ {}). */
export interface ConfigView {
  architecture?: string;
  os?: string;
  variant?: string;
  Env?: string[];
  Cmd?: string[];
  Entrypoint?: string[];
  WorkingDir?: string;
  User?: string;
  Labels?: Record<string, string>;
  ExposedPorts?: string[];
  Volumes?: string[];
  Healthcheck?: unknown;
  OnBuild?: string[];
  StopSignal?: string;
  /** MAINTAINER. */
  author?: string;
  Shell?: string[];
  /** Non-empty diff_ids count (layers). */
  layers: number;
  history: HistoryStep[];
}

export interface HistoryStep {
  created_by: string;
  empty_layer: boolean;
  comment?: string;
}

/** Fields of `config` compared as they are. */
const PLAIN_FIELDS = [
  "Env",
  "Cmd",
  "Entrypoint",
  "WorkingDir",
  "User",
  "Labels",
  "Healthcheck",
  "OnBuild",
  "StopSignal",
  "Shell",
] as const;

function isEmpty(v: unknown): boolean {
  if (v === undefined || v === null || v === "") return true;
  if (Array.isArray(v)) return v.length === 0;
  if (typeof v === "object") return Object.keys(v as object).length === 0;
  return false;
}

function sortedKeys(v: unknown): string[] | undefined {
  return isEmpty(v) ? undefined : Object.keys(v as object).sort();
}

/** Picks and normalizes what is compared from a raw image config JSON. */
export function configView(raw: Record<string, unknown>): ConfigView {
  const c = (raw.config ?? {}) as Record<string, unknown>;
  const view: ConfigView = { layers: 0, history: [] };
  for (const k of ["architecture", "os", "variant", "author"] as const) {
    if (!isEmpty(raw[k])) view[k] = raw[k] as string;
  }
  for (const k of PLAIN_FIELDS) {
    // biome-ignore lint/suspicious/noExplicitAny: copying a JSON value into the matching field
    if (!isEmpty(c[k])) (view as any)[k] = c[k];
  }
  const ports = sortedKeys(c.ExposedPorts);
  if (ports) view.ExposedPorts = ports;
  const vols = sortedKeys(c.Volumes);
  if (vols) view.Volumes = vols;
  const rootfs = (raw.rootfs ?? {}) as { diff_ids?: string[] };
  view.layers = rootfs.diff_ids?.length ?? 0;
  for (const h of (raw.history ?? []) as Record<string, unknown>[]) {
    const step: HistoryStep = {
      created_by: (h.created_by as string | undefined) ?? "",
      empty_layer: h.empty_layer === true,
    };
    if (typeof h.comment === "string" && h.comment) step.comment = h.comment;
    view.history.push(step);
  }
  return view;
}

/**
 * A history entry's instruction in one form for both builders:
 * dockerd's classic builder writes `/bin/sh -c #(nop)  ENV A=1` and
 * `/bin/sh -c echo hi` (RUN), BuildKit `ENV A=1` and `RUN /bin/sh -c echo hi # buildkit`.
 * COPY/ADD are reduced to the keyword and destination-free form both agree on only loosely
 * (classic writes `COPY file:<hash> in /dst`, BuildKit `COPY src /dst`), so only the keyword stays.
 */
export function canonicalStep(createdBy: string): string {
  let s = createdBy.replace(/ # buildkit$/, "");
  // The classic builder prefixes metadata steps with the current SHELL: `/bin/sh -ec #(nop) …`.
  const nop = /^\S.*? #\(nop\) +(.*)$/s.exec(s);
  if (nop) s = (nop[1] as string).trimEnd();
  else if (s && !/^[A-Z]+ /.test(s)) s = `RUN ${s}`;
  const kw = /^(COPY|ADD) /.exec(s);
  if (kw) return kw[1] as string;
  return s;
}
