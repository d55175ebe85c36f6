import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { formatBytes, toFixedGo } from "./index.js";

describe("Go-compatible number formatting", () => {
  it("rounds exact ties to even like Go's %.Nf", () => {
    assert.equal(toFixedGo(0.25, 1), "0.2");
    assert.equal(toFixedGo(0.75, 1), "0.8");
    assert.equal(toFixedGo(2.5, 0), "2");
    assert.equal(toFixedGo(1.125, 2), "1.12");
    assert.equal(toFixedGo(0.35, 1), "0.3"); // 0.35 is slightly below .35 as a double
    assert.equal(toFixedGo(0.0496, 1), "0.0");
    assert.equal(toFixedGo(12.3456, 2), "12.35");
  });

  it("formats sizes like units.Bytes with %.2f", () => {
    assert.equal(formatBytes(0), "0B");
    assert.equal(formatBytes(212), "212B");
    assert.equal(formatBytes(999), "999B");
    assert.equal(formatBytes(1000), "1.00kB");
    assert.equal(formatBytes(1125), "1.12kB");
    assert.equal(formatBytes(1_234_567), "1.23MB");
    assert.equal(formatBytes(28_230_000), "28.23MB");
    assert.equal(formatBytes(3_100_000_000), "3.10GB");
  });
});
