import assert from "node:assert/strict";
import { test } from "node:test";
import { humanSize, progressBar } from "./progress.js";

test("sizes and bars as dockerd renders them", () => {
  assert.equal(humanSize(512), "512B");
  assert.equal(humanSize(3_450_000), "3.45MB");
  assert.equal(humanSize(1_048_576), "1.049MB");
  assert.equal(progressBar(0, 1000), `[>${" ".repeat(50)}]       0B/1kB`);
  assert.equal(progressBar(1000, 1000), `[${"=".repeat(50)}>] ${"1kB".padStart(8)}/1kB`);
});
