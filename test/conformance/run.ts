/**
 * `npm run conformance [-- [--no-dockerd] [--no-digests] [case …]]`: builds
 * every case under test/conformance/cases with buildctl (straight against the
 * sandbox's buildkitd), Arca's classic API, buildx through Arca (when the
 * docker CLI has it) and a stock dockerd's classic builder; compares image
 * configs and flattened file trees; prints one line per case and a total.
 */
import path from "node:path";
import { RUNNER_IDS } from "./case-spec.js";
import { startEnvironment } from "./environment.js";
import { loadKnown, staleWildcards, validateKnown } from "./known-differences.js";
import { type CaseOutcome, listCases, runCase } from "./run-case.js";

export const DIFFERENCES_FILE = path.join(import.meta.dirname, "differences.md");

function line(o: CaseOutcome): string {
  const cols = RUNNER_IDS.map((r) => `${r}=${o.status[r] ?? "-"}`);
  return `${o.passed ? "PASS" : "FAIL"} ${o.name.padEnd(32)} ${cols.join(" ")} digest=${o.digest}`;
}

async function main(): Promise<number> {
  const args = process.argv.slice(2);
  const flags = new Set(args.filter((a) => a.startsWith("--")));
  const wanted = args.filter((a) => !a.startsWith("--"));
  const all = await listCases();
  const known = await loadKnown(DIFFERENCES_FILE);
  validateKnown(known, new Set(all));
  const unknown = wanted.filter((w) => !all.includes(w));
  if (unknown.length) throw new Error(`no such case: ${unknown.join(", ")}`);
  const names = wanted.length ? wanted : all;
  const env = await startEnvironment({
    dockerd: !flags.has("--no-dockerd"),
    buildx: !flags.has("--no-buildx"),
  });
  let passed = 0;
  let failed = 0;
  const used = new Set<string>();
  let comparedWithDockerd = false;
  try {
    for (const n of env.notes) process.stdout.write(`note: ${n}\n`);
    for (const name of names) {
      const o = await runCase(env, name, { known, digests: !flags.has("--no-digests") });
      process.stdout.write(`${line(o)}\n`);
      for (const p of o.problems) process.stdout.write(`${p.replace(/^/gm, "    ")}\n`);
      if (o.passed) passed++;
      else failed++;
      for (const id of o.knownUsed) used.add(id);
      if (o.status["dockerd-classic"] === "ok" || o.status["dockerd-classic"] === "differs") {
        comparedWithDockerd = true;
      }
    }
    if (comparedWithDockerd) {
      for (const k of staleWildcards(known, used)) {
        process.stdout.write(
          `FAIL known difference "${k.id}" showed in no case: remove it from differences.md\n`,
        );
        failed++;
      }
    }
  } finally {
    await env.stop();
  }
  process.stdout.write(`${passed} passed, ${failed} failed\n`);
  return failed === 0 ? 0 : 1;
}

process.exitCode = await main();
