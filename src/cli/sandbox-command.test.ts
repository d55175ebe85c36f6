import assert from "node:assert/strict";
import { mkdir, mkdtemp, realpath, rm, symlink } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { after, before, test } from "node:test";
import { toolsBin } from "../sandbox/index.js";
import { runSandboxCommand } from "./sandbox-command.js";

let tmp: string;
let savedToolsDir: string | undefined;

before(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), "arca-sandbox-cmd-"));
  // A tools dir of symlinks to the real tools, with busybox as a STAND-IN for arca-proxy.
  const bin = path.join(tmp, "tools", "bin");
  await mkdir(bin, { recursive: true });
  for (const t of ["buildkitd", "buildctl", "runc", "cni-loopback", "cni-bridge", "cni-host-local", "nft"]) {
    await symlink(await realpath(path.join(toolsBin(), t)), path.join(bin, t));
  }
  await symlink("/usr/bin/busybox", path.join(bin, "busybox"));
  await symlink("/usr/bin/busybox", path.join(bin, "arca-proxy"));
  savedToolsDir = process.env.ARCA_TOOLS_DIR;
  process.env.ARCA_TOOLS_DIR = path.join(tmp, "tools");
});

after(async () => {
  if (savedToolsDir === undefined) delete process.env.ARCA_TOOLS_DIR;
  else process.env.ARCA_TOOLS_DIR = savedToolsDir;
  await rm(tmp, { recursive: true, force: true });
});

function capture() {
  const out = { stdout: "", stderr: "" };
  return {
    out,
    io: {
      stdout: { write: (s: string) => (out.stdout += s) },
      stderr: { write: (s: string) => (out.stderr += s) },
    },
  };
}

test("arca sandbox image: progress on stderr, the digest on stdout; a rerun is up to date", async () => {
  const dataRoot = path.join(tmp, "data");
  const a = capture();
  assert.equal(await runSandboxCommand(["image", "--data-root", dataRoot], a.io), 0);
  assert.match(a.out.stdout, /^sha256:[a-f0-9]{64}\n$/);
  assert.match(a.out.stderr, /^sandbox image sha256:[a-f0-9]{64} [\d.]+ MB in [\d.]+ s$/m);
  const b = capture();
  assert.equal(await runSandboxCommand(["image", "--data-root", dataRoot], b.io), 0);
  assert.equal(b.out.stdout, a.out.stdout);
  assert.match(b.out.stderr, /up to date/);
});

test("arca sandbox: usage errors", async () => {
  const a = capture();
  assert.equal(await runSandboxCommand(["bogus"], a.io), 1);
  assert.match(a.out.stderr, /unknown sandbox command "bogus"/);
  const b = capture();
  assert.equal(await runSandboxCommand([], b.io), 1);
  assert.match(b.out.stdout, /Usage: arca sandbox/);
  const c = capture();
  assert.equal(await runSandboxCommand(["image", "--nope"], c.io), 1);
  assert.match(c.out.stderr, /Unknown option/);
});

test("a missing tool is reported with the command that installs it", async () => {
  const saved = process.env.ARCA_TOOLS_DIR;
  process.env.ARCA_TOOLS_DIR = path.join(tmp, "no-tools");
  try {
    const a = capture();
    assert.equal(await runSandboxCommand(["image", "--data-root", path.join(tmp, "data2")], a.io), 1);
    assert.match(a.out.stderr, /buildkitd not found at .*npm run setup/);
  } finally {
    process.env.ARCA_TOOLS_DIR = saved;
  }
});
