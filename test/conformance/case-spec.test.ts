import assert from "node:assert/strict";
import { lstat, mkdir, mkdtemp, readlink, rm, stat, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { test } from "node:test";
import { prepareCase } from "./case-setup.js";
import { parseCaseSpec, runnerApplies } from "./case-spec.js";
import { listCases, loadSpec } from "./run-case.js";

test("parseCaseSpec accepts the documented keys and rejects typos and bad setup steps", () => {
  const spec = parseCaseSpec(
    { buildArgs: { A: "1" }, skip: { "dockerd-classic": "heredocs" }, setup: [{ chmod: "x", mode: "4755" }] },
    "c",
  );
  assert.equal(spec.buildArgs?.A, "1");
  assert.throws(() => parseCaseSpec({ buildArg: {} }, "c"), /unknown key "buildArg"/);
  assert.throws(() => parseCaseSpec({ skip: { dockerd: "x" } }, "c"), /unknown runner dockerd/);
  assert.throws(() => parseCaseSpec({ setup: [{ chmod: "/abs", mode: "1" }] }, "c"), /relative path/);
  assert.throws(() => parseCaseSpec({ setup: [{ chmod: "a", mkdir: "b" }] }, "c"), /exactly one/);
  assert.throws(() => parseCaseSpec({ buildArgs: { A: 1 } }, "c"), /strings to strings/);
  assert.throws(
    () => parseCaseSpec({ rebuild: [{ touch: "../x", mtime: "2026-01-01" }] }, "c"),
    /rebuild\[0\]/,
  );
});

test("runnerApplies: skips listed runners, and the classic API for cases with secrets", () => {
  assert.equal(runnerApplies({ skip: { "dockerd-classic": "x" } }, "dockerd-classic"), false);
  assert.equal(runnerApplies({ skip: { "dockerd-classic": "x" } }, "arca-classic"), true);
  assert.equal(runnerApplies({ secrets: { s: "f" } }, "arca-classic"), false);
  assert.equal(runnerApplies({ secrets: { s: "f" } }, "buildctl"), true);
});

test("prepareCase copies the case and applies setup steps to the copy only", async () => {
  const tmp = await mkdtemp(path.join(os.tmpdir(), "conformance-setup-"));
  try {
    const src = path.join(tmp, "src");
    await mkdir(path.join(src, "d"), { recursive: true });
    await writeFile(path.join(src, "f"), "x");
    await writeFile(path.join(src, "d", "g"), "y");
    const dest = path.join(tmp, "dest");
    await prepareCase(src, dest, [
      { chmod: "f", mode: "4755" },
      { hardlink: "h", target: "f" },
      { symlink: "l", target: "f" },
      { mkdir: "empty/inner", mode: "1777" },
      { write: "big", size: 100_000 },
      { tree: "t", depth: 3, files: 2 },
      { tar: "d.tar.gz", from: "d", compress: "gzip" },
      { remove: "d" },
      { touch: "f", mtime: "2026-01-01T00:00:00.250Z" },
    ]);
    assert.equal((await stat(path.join(dest, "f"))).mtime.toISOString(), "2026-01-01T00:00:00.250Z");
    assert.equal((await stat(path.join(dest, "f"))).mode & 0o7777, 0o4755);
    assert.equal((await stat(path.join(src, "f"))).mode & 0o7777, 0o644);
    assert.equal((await stat(path.join(dest, "h"))).nlink, 2);
    assert.equal(await readlink(path.join(dest, "l")), "f");
    assert.equal((await stat(path.join(dest, "empty/inner"))).mode & 0o7777, 0o1777);
    assert.equal((await stat(path.join(dest, "big"))).size, 100_000);
    assert.ok((await stat(path.join(dest, "t/d0/d1/d2/f1.txt"))).isFile());
    assert.ok((await stat(path.join(dest, "d.tar.gz"))).size > 0);
    await assert.rejects(lstat(path.join(dest, "d")));
    await assert.rejects(
      prepareCase(src, path.join(tmp, "bad"), [{ chmod: "../escape", mode: "1" }]),
      /escapes/,
    );
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
});

test("every committed case has a Dockerfile where its case.json says and a valid case.json", async () => {
  const names = await listCases();
  assert.ok(names.length >= 40, `at least 40 cases (have ${names.length})`);
  for (const n of names) await loadSpec(n);
});
