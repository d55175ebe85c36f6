import assert from "node:assert/strict";
import { test } from "node:test";
import { parseByteSize, parseSandboxLimits } from "./sandbox-limits.js";

test("sizes as docker run --memory takes them", () => {
  assert.equal(parseByteSize("0"), 0);
  assert.equal(parseByteSize("512m"), 512 * 1024 ** 2);
  assert.equal(parseByteSize("8G"), 8 * 1024 ** 3);
  assert.equal(parseByteSize("1.5g"), 1.5 * 1024 ** 3);
  assert.equal(parseByteSize("64mb"), 64 * 1024 ** 2);
  assert.equal(parseByteSize("4096"), 4096);
  for (const bad of ["", "abc", "-1g", "8x", "1e9"])
    assert.throws(() => parseByteSize(bad), /invalid size/, bad);
});

test("--sandbox-pids-limit and --sandbox-memory: defaults when absent, 0 for none, nonsense refused", () => {
  assert.deepEqual(parseSandboxLimits({}), {});
  assert.deepEqual(parseSandboxLimits({ pids: "4096", memory: "2g" }), {
    pidsLimit: 4096,
    memory: 2 * 1024 ** 3,
  });
  assert.deepEqual(parseSandboxLimits({ pids: "0", memory: "0" }), { pidsLimit: 0, memory: 0 });
  assert.throws(() => parseSandboxLimits({ pids: "10" }), /at least 64/);
  assert.throws(() => parseSandboxLimits({ pids: "-5" }), /invalid --sandbox-pids-limit/);
  assert.throws(() => parseSandboxLimits({ pids: "lots" }), /invalid --sandbox-pids-limit/);
  assert.throws(() => parseSandboxLimits({ memory: "1m" }), /at least 64m/);
});
