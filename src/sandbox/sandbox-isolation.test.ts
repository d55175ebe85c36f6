import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { test } from "node:test";
import {
  DEFAULT_SANDBOX_PIDS_LIMIT,
  defaultSandboxMemory,
  sandboxIsolation,
  specVersion,
  subidOverlaps,
} from "./sandbox-isolation.js";

test("the sandbox's isolation: user namespace, two added capabilities, seccomp changes, limits", () => {
  const d = sandboxIsolation();
  assert.equal(d.privileged, false);
  assert.deepEqual(d.userns, { hostId: 100_000, size: 65_536 });
  assert.deepEqual(d.capAdd, ["CAP_SYS_ADMIN", "CAP_NET_ADMIN"]);
  assert.deepEqual(d.seccomp, { allow: ["pivot_root"], enosys: ["keyctl", "add_key", "request_key"] });
  assert.deepEqual(d.sysctls, { "net.ipv4.ip_forward": "1" });
  assert.equal(d.pidsLimit, DEFAULT_SANDBOX_PIDS_LIMIT);
  assert.equal(d.memory, defaultSandboxMemory());
  const none = sandboxIsolation({ pidsLimit: 0, memory: 0 });
  assert.equal("pidsLimit" in none || "memory" in none, false);
});

test("the spec version changes with the settings, not between calls", () => {
  const spec = (limits = {}) => ({
    name: "arca-buildkit",
    image: "arca-buildkit:v1",
    networkMode: "none" as const,
    restartPolicy: { name: "always" as const },
    ...sandboxIsolation(limits),
  });
  assert.equal(specVersion(spec()), specVersion(spec()));
  assert.notEqual(specVersion(spec()), specVersion(spec({ pidsLimit: 1024 })));
  assert.notEqual(specVersion(spec()), specVersion({ ...spec(), userns: undefined, privileged: true }));
});

test("subordinate id ranges that overlap the sandbox's are reported", async () => {
  const dir = await mkdtemp(path.join(tmpdir(), "arca-subid-"));
  try {
    const subuid = path.join(dir, "subuid");
    await writeFile(subuid, "alice:100000:65536\nbob:165536:65536\n# comment\n");
    const w = await subidOverlaps(undefined, [subuid, path.join(dir, "missing")]);
    assert.equal(w.length, 1);
    assert.match(w[0] ?? "", /gives alice ids 100000-165535, which overlap/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
