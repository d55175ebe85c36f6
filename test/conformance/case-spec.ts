/** The ways a case gets built; see runners.ts. */
export const RUNNER_IDS = ["arca-classic", "arca-buildx", "buildctl", "dockerd-classic"] as const;
export type RunnerId = (typeof RUNNER_IDS)[number];

/** Prepares what git cannot store (modes, owners, links, empty dirs, archives, big or deep trees). */
export type SetupStep =
  | { chmod: string; mode: string }
  | { chown: string; uid: number; gid: number }
  | { hardlink: string; target: string }
  | { symlink: string; target: string }
  | { mkdir: string; mode?: string }
  /** A file of `size` deterministic pseudo-random bytes, or `content`. */
  | { write: string; content?: string; size?: number; mode?: string }
  /** `depth` nested directories under `tree`, each holding `files` small files. */
  | { tree: string; depth: number; files: number }
  /** A tar of directory `from` (relative to the case copy), optionally compressed. */
  | { tar: string; from: string; compress?: "gzip" | "bzip2" | "xz" }
  | { remove: string }
  /** Sets a path's mtime (and atime), ISO 8601 with fractions: edits within one second. */
  | { touch: string; mtime: string };

/** `case.json`: everything about a case that is not its Dockerfile and files. */
export interface CaseSpec {
  description?: string;
  /** Build context, relative to the case directory (default "."). */
  context?: string;
  /** Dockerfile path relative to the case directory (default `<context>/Dockerfile`); may lie outside the context. */
  dockerfile?: string;
  buildArgs?: Record<string, string>;
  labels?: Record<string, string>;
  target?: string;
  platform?: string;
  /** Secret id → file relative to the case directory. */
  secrets?: Record<string, string>;
  /** Runners that cannot build this case, with the reason (e.g. dockerd 20.10's classic builder and heredocs). */
  skip?: Partial<Record<RunnerId, string>>;
  setup?: SetupStep[];
  /**
   * Steps applied after a first build with every runner, followed by a second
   * build that is the one compared: a rebuild after editing the context
   * (Arca re-syncs a classic build's context incrementally).
   */
  rebuild?: SetupStep[];
}

const KEYS = new Set([
  "description",
  "context",
  "dockerfile",
  "buildArgs",
  "labels",
  "target",
  "platform",
  "secrets",
  "skip",
  "setup",
  "rebuild",
]);
const STEP_KINDS = [
  "chmod",
  "chown",
  "hardlink",
  "symlink",
  "mkdir",
  "write",
  "tree",
  "tar",
  "remove",
  "touch",
];

function isStringMap(v: unknown): v is Record<string, string> {
  return (
    typeof v === "object" &&
    v !== null &&
    !Array.isArray(v) &&
    Object.values(v).every((x) => typeof x === "string")
  );
}

function relative(v: unknown, what: string): void {
  if (typeof v !== "string" || v === "" || v.startsWith("/") || v.split("/").includes("..")) {
    throw new Error(`${what} must be a relative path inside the case, got ${JSON.stringify(v)}`);
  }
}

/** Validates a parsed case.json (throws with the offending field); unknown keys are errors, so typos show. */
export function parseCaseSpec(raw: unknown, name: string): CaseSpec {
  const fail = (m: string): never => {
    throw new Error(`case ${name}: ${m}`);
  };
  if (typeof raw !== "object" || raw === null || Array.isArray(raw))
    return fail("case.json must be an object");
  const o = raw as Record<string, unknown>;
  for (const k of Object.keys(o)) if (!KEYS.has(k)) fail(`unknown key ${JSON.stringify(k)}`);
  for (const k of ["description", "context", "dockerfile", "target", "platform"]) {
    if (o[k] !== undefined && typeof o[k] !== "string") fail(`${k} must be a string`);
  }
  for (const k of ["buildArgs", "labels", "secrets"]) {
    if (o[k] !== undefined && !isStringMap(o[k])) fail(`${k} must map strings to strings`);
  }
  if (o.skip !== undefined) {
    if (!isStringMap(o.skip)) fail("skip must map runner ids to reasons");
    for (const r of Object.keys(o.skip as object)) {
      if (!(RUNNER_IDS as readonly string[]).includes(r)) fail(`skip: unknown runner ${r}`);
    }
  }
  for (const key of ["setup", "rebuild"]) {
    if (o[key] === undefined) continue;
    if (!Array.isArray(o[key])) fail(`${key} must be a list`);
    for (const [i, s] of (o[key] as unknown[]).entries()) {
      if (typeof s !== "object" || s === null) fail(`${key}[${i}] must be an object`);
      const kinds = STEP_KINDS.filter((k) => k in (s as object));
      if (kinds.length !== 1) fail(`${key}[${i}] must have exactly one of ${STEP_KINDS.join(", ")}`);
      relative((s as Record<string, unknown>)[kinds[0] as string], `case ${name}: ${key}[${i}].${kinds[0]}`);
    }
  }
  if (o.context !== undefined) relative(o.context, `case ${name}: context`);
  if (o.dockerfile !== undefined) relative(o.dockerfile, `case ${name}: dockerfile`);
  return o as CaseSpec;
}

/** Whether a runner builds a case. */
export function runnerApplies(spec: CaseSpec, runner: RunnerId): boolean {
  if (spec.skip?.[runner] !== undefined) return false;
  // The classic API has no way to pass secrets.
  if (spec.secrets && (runner === "arca-classic" || runner === "dockerd-classic")) return false;
  return true;
}
