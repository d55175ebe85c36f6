/**
 * The fast subset of the conformance suite (`npm run conformance` runs all
 * cases): representative cases built with buildctl straight against the
 * sandbox's buildkitd, with Arca's classic API and with a stock dockerd's
 * classic builder, compared as test/conformance/run.ts compares them.
 */
import assert from "node:assert/strict";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { type ConformanceEnv, startEnvironment } from "./conformance/environment.js";
import { type KnownDifference, loadKnown, staleWildcards } from "./conformance/known-differences.js";
import { runCase } from "./conformance/run-case.js";

/** Case → also check SOURCE_DATE_EPOCH digests. */
const FAST_CASES: [string, boolean][] = [
  ["basic-run", true],
  ["env-forms", false],
  ["copy-chown", false],
  ["add-archives", true],
  ["multistage-copy-from", false],
  ["file-modes", false],
  ["heredocs", false],
  ["onbuild-trigger", false],
];

describe("conformance (fast subset): Arca's classic API = buildctl on the same buildkitd; dockerd modulo differences.md", () => {
  let env: ConformanceEnv;
  let known: KnownDifference[];
  const used = new Set<string>();

  before(async () => {
    known = await loadKnown(path.join(import.meta.dirname, "conformance", "differences.md"));
    env = await startEnvironment({ dockerd: true, buildx: false });
  });

  after(async () => {
    await env?.stop();
  });

  for (const [name, digests] of FAST_CASES) {
    test(name, async () => {
      const o = await runCase(env, name, { known, digests });
      for (const id of o.knownUsed) used.add(id);
      assert.ok(o.passed, `${name}:\n${o.problems.join("\n")}`);
      assert.equal(o.status.buildctl, "ok");
      if (o.status["arca-classic"] !== "skip") assert.equal(o.status["arca-classic"], "ok");
      if (digests) assert.equal(o.digest, "same");
    });
  }

  test('known differences for any case ("*") still show', () => {
    assert.deepEqual(
      staleWildcards(known, used).map((k) => k.id),
      [],
    );
  });
});
