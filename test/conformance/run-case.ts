import { existsSync } from "node:fs";
import { mkdir, readdir, readFile, rm } from "node:fs/promises";
import path from "node:path";
import { applySteps, prepareCase } from "./case-setup.js";
import { type CaseSpec, parseCaseSpec, type RunnerId, runnerApplies } from "./case-spec.js";
import { compareImages, formatDifferences, type ImageSnapshot } from "./compare.js";
import { configView } from "./config-view.js";
import type { ConformanceEnv } from "./environment.js";
import { flattenLayers } from "./file-tree.js";
import { readArchiveImage, unpackArchive } from "./image-archive.js";
import { checkKnown, type KnownDifference } from "./known-differences.js";
import {
  arcaApiDigests,
  buildctlDigests,
  buildxDigests,
  dockerfileInContext,
  type ImageDigests,
} from "./reproducible.js";
import type { PreparedCase } from "./runners.js";

export const CASES_DIR = path.join(import.meta.dirname, "cases");

/** Per runner: built and equal to the reference, different, failed to build, or not applicable. */
export type RunnerStatus = "ok" | "differs" | "error" | "skip";

export interface CaseOutcome {
  name: string;
  status: Partial<Record<RunnerId, RunnerStatus>>;
  /** SOURCE_DATE_EPOCH digest check across the BuildKit paths. */
  digest: "same" | "differs" | "error" | "n/a";
  problems: string[];
  /** Known differences this case showed (for the run-wide check of "*" entries). */
  knownUsed: string[];
  passed: boolean;
}

export async function listCases(): Promise<string[]> {
  const names = (await readdir(CASES_DIR, { withFileTypes: true })).filter((d) => d.isDirectory());
  return names.map((d) => d.name).sort();
}

export async function loadSpec(name: string): Promise<CaseSpec> {
  const file = path.join(CASES_DIR, name, "case.json");
  if (!existsSync(file)) return {};
  return parseCaseSpec(JSON.parse(await readFile(file, "utf8")), name);
}

async function prepare(
  env: ConformanceEnv,
  name: string,
  spec: CaseSpec,
): Promise<PreparedCase & { root: string }> {
  const dir = path.join(env.tmp, "cases", name);
  await rm(dir, { recursive: true, force: true });
  await mkdir(path.dirname(dir), { recursive: true });
  await prepareCase(path.join(CASES_DIR, name), dir, spec.setup);
  const context = path.join(dir, spec.context ?? ".");
  const secrets: Record<string, string> = {};
  for (const [id, f] of Object.entries(spec.secrets ?? {})) secrets[id] = path.join(dir, f);
  return {
    root: dir,
    name,
    context,
    dockerfile: spec.dockerfile ? path.join(dir, spec.dockerfile) : path.join(context, "Dockerfile"),
    spec,
    secrets,
  };
}

async function snapshot(archive: string, dir: string): Promise<ImageSnapshot> {
  await unpackArchive(archive, dir);
  const img = await readArchiveImage(dir);
  return { config: configView(img.config), tree: await flattenLayers(img.layers) };
}

export interface RunCaseOptions {
  known: KnownDifference[];
  /** Runners to use (default: all the environment has). */
  only?: RunnerId[];
  /** Also run the SOURCE_DATE_EPOCH digest check. */
  digests: boolean;
}

/**
 * Builds one case with every applicable runner and compares: Arca's paths
 * with buildctl exactly (same buildkitd, so the same image), dockerd's
 * classic builder with BuildKit's result modulo the known differences.
 */
export async function runCase(env: ConformanceEnv, name: string, opts: RunCaseOptions): Promise<CaseOutcome> {
  const out: CaseOutcome = { name, status: {}, digest: "n/a", problems: [], knownUsed: [], passed: false };
  const work = path.join(env.tmp, "out", name);
  try {
    const spec = await loadSpec(name);
    const prepared = await prepare(env, name, spec);
    await mkdir(work, { recursive: true });
    const snaps = new Map<RunnerId, ImageSnapshot>();
    const runners = env.runners.filter((r) => {
      const use = (!opts.only || opts.only.includes(r.id)) && runnerApplies(spec, r.id);
      if (!use) out.status[r.id] = "skip";
      return use;
    });
    if (spec.rebuild) {
      // First round: builds whose caches and synced contexts the edited rebuild starts from.
      for (const r of runners) {
        await r.build(prepared, path.join(work, `${r.id}.first.tar`)).catch((err: Error) => {
          out.problems.push(`${r.id} (first build): ${err.message}`);
        });
        await rm(path.join(work, `${r.id}.first.tar`), { force: true });
      }
      await applySteps(prepared.root, spec.rebuild);
    }
    for (const r of runners) {
      const archive = path.join(work, `${r.id}.tar`);
      try {
        await r.build(prepared, archive);
        snaps.set(r.id, await snapshot(archive, path.join(work, r.id)));
        out.status[r.id] = "ok";
      } catch (err) {
        out.status[r.id] = "error";
        out.problems.push(`${r.id}: ${(err as Error).message}`);
      }
      await rm(archive, { force: true });
    }
    const reference = snaps.get("buildctl");
    for (const id of ["arca-classic", "arca-buildx"] as const) {
      const s = snaps.get(id);
      if (!s || !reference) continue;
      const diffs = compareImages(s, reference, { canonicalHistory: false });
      if (diffs.length) {
        out.status[id] = "differs";
        out.problems.push(`${id} differs from buildctl:\n${formatDifferences(diffs, id, "buildctl")}`);
      }
    }
    const stock = snaps.get("dockerd-classic");
    const buildkit = snaps.get("arca-classic") ?? reference;
    if (stock && buildkit) {
      const diffs = compareImages(buildkit, stock, { canonicalHistory: true });
      const check = checkKnown(name, diffs, opts.known);
      out.knownUsed = check.used;
      if (check.unexpected.length || check.stale.length) out.status["dockerd-classic"] = "differs";
      if (check.unexpected.length) {
        out.problems.push(
          `dockerd-classic differs from BuildKit:\n${formatDifferences(check.unexpected, "buildkit", "dockerd")}`,
        );
      }
      for (const k of check.stale) {
        out.problems.push(
          `known difference "${k.id}" no longer shows in ${name}: remove the case from it in differences.md`,
        );
      }
    }
    if (opts.digests && reference) out.digest = await digestCheck(env, prepared, work, out);
  } catch (err) {
    out.problems.push((err as Error).message);
  } finally {
    await rm(work, { recursive: true, force: true });
  }
  out.passed = out.problems.length === 0;
  return out;
}

/** With SOURCE_DATE_EPOCH (and rewrite-timestamp on every side), Arca's paths and buildctl must agree to the digest. */
async function digestCheck(
  env: ConformanceEnv,
  c: PreparedCase,
  work: string,
  out: CaseOutcome,
): Promise<CaseOutcome["digest"]> {
  const sides: [string, () => Promise<ImageDigests>][] = [];
  sides.push(["buildctl", () => buildctlDigests(env.buildctl, env.buildkitAddr, c, work)]);
  const tag = `conformance/${c.name.toLowerCase()}:repro`;
  if (runnerApplies(c.spec, "arca-classic") && dockerfileInContext(c)) {
    sides.push(["arca-classic", () => arcaApiDigests(env.arcaSocket, c, tag)]);
  }
  if (env.runners.some((r) => r.id === "arca-buildx") && runnerApplies(c.spec, "arca-buildx")) {
    sides.push([
      "arca-buildx",
      () => buildxDigests(env.arcaSocket, env.dockerConfig, c, `${tag}-buildx`, work),
    ]);
  }
  if (sides.length < 2) return "n/a";
  const got: [string, ImageDigests][] = [];
  try {
    for (const [n, f] of sides) got.push([n, await f()]);
  } catch (err) {
    out.problems.push(`digest check: ${(err as Error).message}`);
    return "error";
  }
  const [ref, refD] = got[0] as [string, ImageDigests];
  let same = true;
  for (const [n, d] of got.slice(1)) {
    if (d.config !== refD.config || d.manifest !== refD.manifest) {
      same = false;
      out.problems.push(
        `SOURCE_DATE_EPOCH digests differ: ${n} config ${d.config} manifest ${d.manifest}, ${ref} config ${refD.config} manifest ${refD.manifest}`,
      );
    }
  }
  return same ? "same" : "differs";
}
