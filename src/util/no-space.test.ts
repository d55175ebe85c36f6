import assert from "node:assert/strict";
import { test } from "node:test";
import { noSpaceMessage } from "./no-space.js";

test("a full disk is named by the path that failed, through wrapped causes", () => {
  const enospc = Object.assign(new Error("ENOSPC: no space left on device, write"), {
    code: "ENOSPC",
    path: "/var/lib/arca/images/ingest/blob-1-a",
  });
  const wrapped = new Error("loading the sandbox image", { cause: enospc });
  assert.equal(
    noSpaceMessage(wrapped),
    "no space left on /var/lib/arca/images/ingest/blob-1-a: loading the sandbox image",
  );
  assert.equal(noSpaceMessage(new Error("boom")), undefined);
  const sqlite = Object.assign(new Error("database or disk is full"), { code: "SQLITE_FULL" });
  assert.equal(noSpaceMessage(sqlite), "no space left on the device: database or disk is full");
  const named = new Error("no space left on /x: unpacking", { cause: { code: "ENOSPC" } });
  assert.equal(noSpaceMessage(named), "no space left on /x: unpacking");
});
