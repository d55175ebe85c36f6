import assert from "node:assert/strict";
import { test } from "node:test";
import { seccompProfile } from "./seccomp.js";

const DEFAULT_CAPS = ["CAP_CHOWN", "CAP_KILL", "CAP_SETUID"];
const rulesFor = (p: ReturnType<typeof seccompProfile>, name: string) =>
  p.syscalls.filter((r) => r.names.includes(name));

test("Docker's default profile as moby generates it for x86_64", () => {
  const p = seccompProfile(DEFAULT_CAPS, {}, { arch: "x64", kernelRelease: "6.18.44-fc" });
  assert.equal(p.defaultAction, "SCMP_ACT_ERRNO");
  assert.equal(p.defaultErrnoRet, 1);
  assert.deepEqual(p.architectures, ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]);
  // No CAP_SYS_ADMIN: no mount, clone only without namespace flags, clone3 answers ENOSYS.
  assert.deepEqual(rulesFor(p, "mount"), []);
  assert.deepEqual(rulesFor(p, "clone"), [
    {
      names: ["clone"],
      action: "SCMP_ACT_ALLOW",
      args: [{ index: 0, value: 2114060288, op: "SCMP_CMP_MASKED_EQ" }],
    },
  ]);
  assert.deepEqual(rulesFor(p, "clone3"), [{ names: ["clone3"], action: "SCMP_ACT_ERRNO", errnoRet: 38 }]);
  assert.ok(rulesFor(p, "arch_prctl").length === 1, "amd64-only rule kept");
  assert.deepEqual(rulesFor(p, "s390_runtime_instr"), [], "s390-only rule dropped");
  assert.deepEqual(rulesFor(p, "pivot_root"), []);
  assert.deepEqual(rulesFor(p, "keyctl"), []);
  // ptrace from 4.8 on.
  assert.equal(rulesFor(p, "ptrace").length, 1);
  const old = seccompProfile(DEFAULT_CAPS, {}, { arch: "x64", kernelRelease: "4.4.0" });
  assert.equal(rulesFor(old, "ptrace").length, 0);
});

test("capabilities open their syscalls; changes allow and ENOSYS on top", () => {
  const p = seccompProfile(
    [...DEFAULT_CAPS, "CAP_SYS_ADMIN"],
    { allow: ["pivot_root"], enosys: ["keyctl", "add_key", "request_key"] },
    { arch: "x64", kernelRelease: "6.18.0" },
  );
  for (const n of ["mount", "umount2", "unshare", "setns", "clone", "clone3"])
    assert.deepEqual(
      rulesFor(p, n).map((r) => [r.action, r.args ?? null]),
      [["SCMP_ACT_ALLOW", null]],
      n,
    );
  assert.deepEqual(rulesFor(p, "pivot_root"), [{ names: ["pivot_root"], action: "SCMP_ACT_ALLOW" }]);
  assert.deepEqual(rulesFor(p, "keyctl"), [
    { names: ["keyctl", "add_key", "request_key"], action: "SCMP_ACT_ERRNO", errnoRet: 38 },
  ]);
  // CAP_SYS_MODULE was not granted: still no module loading.
  assert.deepEqual(rulesFor(p, "init_module"), []);
});
