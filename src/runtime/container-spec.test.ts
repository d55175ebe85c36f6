import assert from "node:assert/strict";
import { test } from "node:test";
import { validateSpec } from "./container-spec.js";
import type { ContainerSpec } from "./types.js";

const base: ContainerSpec = {
  name: "c1",
  image: "busybox",
  networkMode: "none",
  restartPolicy: { name: "no" },
};
const bad = (spec: Partial<ContainerSpec>, re: RegExp) =>
  assert.throws(
    () => validateSpec({ ...base, ...spec }),
    (e: Error) => re.test(e.message),
    JSON.stringify(spec),
  );

test("isolation settings are checked before anything is created", () => {
  const ok = validateSpec({
    ...base,
    userns: { hostId: 100_000, size: 65_536 },
    capAdd: ["SYS_ADMIN"],
    seccomp: { allow: ["pivot_root"], enosys: ["keyctl"] },
    sysctls: { "net.ipv4.ip_forward": "1" },
    pidsLimit: 100,
    memory: 64 * 1024 ** 2,
  });
  assert.equal(ok.pidsLimit, 100);
  bad({ userns: { hostId: 100_000, size: 65_536 }, networkMode: "host" }, /network namespace of its own/);
  bad({ userns: { hostId: 100_000, size: 65_536 }, privileged: true }, /privileged/);
  bad({ userns: { hostId: 0, size: 65_536 } }, /invalid user namespace mapping/);
  bad({ userns: { hostId: 4_294_967_000, size: 65_536 } }, /beyond the id range/);
  bad({ seccomp: { allow: ["pivot_root; rm"] } }, /invalid syscall name/);
  bad({ sysctls: { "kernel.core_pattern": "|/tmp/x" } }, /not namespaced/);
  bad({ sysctls: { "net.ipv4.ip_forward": "1" }, networkMode: "host" }, /network namespace of its own/);
  bad({ pidsLimit: 0 }, /invalid pids limit/);
  bad({ memory: 1024 }, /minimum is 6 MiB/);
});
