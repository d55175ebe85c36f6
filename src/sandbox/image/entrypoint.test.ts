import assert from "node:assert/strict";
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { after, before, beforeEach, test } from "node:test";
import { promisify } from "node:util";
import { sleep } from "../../util/index.js";
import { assembleSandboxImage } from "./assemble.js";
import { makeTestTools, type TestTools, unpackLayoutLayer } from "./test-tools.js";

// The real entrypoint runs under chroot in the assembled rootfs (busybox sh), with stand-in scripts in
// place of arca-proxy and buildkitd that record their arguments and signals into /tmp.

const PROXY_STAND_IN = `#!/bin/sh
echo "$*" > /tmp/proxy.args
echo $$ > /tmp/proxy.pid
mode=$(cat /tmp/proxy.mode 2>/dev/null)
if [ "$mode" = fail ]; then exit 2; fi
while [ $# -gt 0 ]; do if [ "$1" = --ready-file ]; then ready=$2; fi; shift; done
if [ "$mode" = slow ]; then usleep 300000; fi
touch /tmp/proxy.readied "$ready"
exec sleep 1000
`;

const BUILDKITD_STAND_IN = `#!/bin/sh
echo "$*" > /tmp/buildkitd.args
if [ -e /tmp/proxy.readied ]; then touch /tmp/buildkitd.saw-ready; fi
code=$(cat /tmp/buildkitd.exit 2>/dev/null)
if [ -n "$code" ]; then exit "$code"; fi
term=$(cat /tmp/buildkitd.term-exit 2>/dev/null || echo 7)
trap 'echo TERM > /tmp/buildkitd.signal; exit $term' TERM
echo $$ > /tmp/buildkitd.pid
while :; do usleep 20000; done
`;

// Stand-in for nft: the test runs under chroot in the host's network namespace, where the real
// nft would load the step firewall into the host.
const NFT_STAND_IN = `#!/bin/sh
echo "$*" > /tmp/nft.args
[ -e /tmp/buildkitd.pid ] && touch /tmp/nft.after-buildkitd
code=$(cat /tmp/nft.exit 2>/dev/null)
exit \${code:-0}
`;

const execFileAsync = promisify(execFile);

let tools: TestTools;
let tmp: string;
let rootfs: string;

before(async () => {
  tools = await makeTestTools();
  tmp = await mkdtemp(path.join(os.tmpdir(), "arca-entrypoint-test-"));
  const image = await assembleSandboxImage({ dataRoot: path.join(tmp, "data"), toolsBin: tools.bin });
  rootfs = path.join(tmp, "rootfs");
  await unpackLayoutLayer(image.layoutDir, rootfs);
  await writeFile(path.join(rootfs, "usr/local/bin/arca-proxy"), PROXY_STAND_IN, { mode: 0o755 });
  await writeFile(path.join(rootfs, "usr/local/bin/buildkitd"), BUILDKITD_STAND_IN, { mode: 0o755 });
  await rm(path.join(rootfs, "usr/sbin/nft"));
  await writeFile(path.join(rootfs, "usr/sbin/nft"), NFT_STAND_IN, { mode: 0o755 });
  // runc gives the container a /dev; chroot does not, and sh opens /dev/null for background jobs.
  await execFileAsync("mknod", ["-m", "666", path.join(rootfs, "dev/null"), "c", "1", "3"]);
});

after(async () => {
  await rm(tmp, { recursive: true, force: true });
  await tools.cleanup();
});

beforeEach(async () => {
  const t = path.join(rootfs, "tmp");
  for (const f of await readdir(t)) await rm(path.join(t, f), { force: true });
});

const inRoot = (p: string) => path.join(rootfs, p);
const readText = (p: string) => readFile(inRoot(p), "utf8");

function start(): { child: ChildProcess; exited: Promise<{ code: number | null; stderr: string }> } {
  const child = spawn("chroot", [rootfs, "/entrypoint.sh"], { stdio: ["ignore", "ignore", "pipe"] });
  let stderr = "";
  child.stderr?.on("data", (c: Buffer) => {
    stderr += c.toString();
  });
  const exited = new Promise<{ code: number | null; stderr: string }>((resolve) => {
    child.on("exit", (code) => resolve({ code, stderr }));
  });
  return { child, exited };
}

async function waitFor(p: string, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!existsSync(inRoot(p))) {
    if (Date.now() > deadline) throw new Error(`${p} did not appear within ${ms} ms`);
    await sleep(10);
  }
}

async function assertGone(pidFile: string): Promise<void> {
  const pid = Number((await readText(pidFile)).trim());
  assert.throws(() => process.kill(pid, 0), { code: "ESRCH" }, `${pidFile} process ${pid} still running`);
}

test("TERM goes to buildkitd, the proxy dies with it, the exit code is buildkitd's", async () => {
  // A ready file left by a previous run must not count.
  await writeFile(inRoot("run/arca-proxy.ready"), "");
  await writeFile(inRoot("tmp/proxy.mode"), "slow");
  const { child, exited } = start();
  await waitFor("tmp/buildkitd.pid");
  assert.ok(existsSync(inRoot("tmp/buildkitd.saw-ready")), "buildkitd started before the proxy was ready");
  assert.equal(
    (await readText("tmp/proxy.args")).trim(),
    "--forward unix:/run/arca/buildkitd.sock=tcp:127.0.0.1:8088 --forward tcp:127.0.0.1:5991=unix:/run/arca/registry.sock --forward tcp:0.0.0.0:3128=unix:/run/arca/egress.sock --unix-mode 0660 --ready-file /run/arca-proxy.ready",
  );
  assert.equal(
    (await readText("tmp/buildkitd.args")).trim(),
    "--addr tcp://127.0.0.1:8088 --config /etc/buildkit/buildkitd.toml --root /var/lib/buildkit",
  );
  assert.equal((await readText("tmp/nft.args")).trim(), "-f /etc/arca/step-firewall.nft");
  assert.ok(
    !existsSync(inRoot("tmp/nft.after-buildkitd")),
    "the firewall was loaded after buildkitd started",
  );
  child.kill("SIGTERM");
  const { code } = await exited;
  assert.equal(code, 7);
  assert.equal((await readText("tmp/buildkitd.signal")).trim(), "TERM");
  await assertGone("tmp/proxy.pid");
});

test("buildkitd exiting on its own stops the proxy and passes its code through", async () => {
  await writeFile(inRoot("tmp/buildkitd.exit"), "3");
  const { exited } = start();
  const { code } = await exited;
  assert.equal(code, 3);
  await assertGone("tmp/proxy.pid");
});

test("a proxy that exits before it is ready fails the container without starting buildkitd", async () => {
  await writeFile(inRoot("tmp/proxy.mode"), "fail");
  const { exited } = start();
  const { code, stderr } = await exited;
  assert.equal(code, 1);
  assert.match(stderr, /arca-proxy exited before it was ready/);
  assert.ok(!existsSync(inRoot("tmp/buildkitd.args")), "buildkitd was started");
});

test("a proxy that dies later takes buildkitd down; the container exits non-zero", async () => {
  await writeFile(inRoot("tmp/buildkitd.term-exit"), "0");
  const { exited } = start();
  await waitFor("tmp/buildkitd.pid");
  process.kill(Number((await readText("tmp/proxy.pid")).trim()), "SIGKILL");
  const { code, stderr } = await exited;
  assert.equal(code, 1);
  assert.match(stderr, /arca-proxy exited; stopping buildkitd/);
  assert.equal((await readText("tmp/buildkitd.signal")).trim(), "TERM");
});

test("TERM while waiting for the proxy stops it and never starts buildkitd", async () => {
  await writeFile(inRoot("tmp/proxy.mode"), "slow");
  const { child, exited } = start();
  await waitFor("tmp/proxy.pid");
  child.kill("SIGTERM");
  const { code } = await exited;
  assert.equal(code, 143);
  assert.ok(!existsSync(inRoot("tmp/buildkitd.args")), "buildkitd was started");
  await assertGone("tmp/proxy.pid");
});

test("a step firewall that cannot be loaded fails the container without starting buildkitd", async () => {
  await writeFile(inRoot("tmp/nft.exit"), "1");
  const { exited } = start();
  const { code, stderr } = await exited;
  assert.equal(code, 1);
  assert.match(stderr, /cannot load the step firewall/);
  assert.ok(!existsSync(inRoot("tmp/buildkitd.args")), "buildkitd was started");
  await assertGone("tmp/proxy.pid");
});

test("the channel's buildkitd.toml and buildkitd.env configure buildkitd", async () => {
  await mkdir(inRoot("run/arca"), { recursive: true });
  await writeFile(inRoot("run/arca/buildkitd.toml"), "# from the daemon\n");
  await writeFile(inRoot("run/arca/buildkitd.env"), "HTTPS_PROXY=http://bk:secret@127.0.0.1:3128\n");
  await writeFile(
    inRoot("usr/local/bin/buildkitd"),
    BUILDKITD_STAND_IN.replace("#!/bin/sh\n", '#!/bin/sh\necho "$HTTPS_PROXY" > /tmp/buildkitd.proxy\n'),
    { mode: 0o755 },
  );
  try {
    const { child, exited } = start();
    await waitFor("tmp/buildkitd.pid");
    assert.match(await readText("tmp/buildkitd.args"), /--config \/run\/arca\/buildkitd.toml/);
    assert.equal((await readText("tmp/buildkitd.proxy")).trim(), "http://bk:secret@127.0.0.1:3128");
    child.kill("SIGTERM");
    await exited;
  } finally {
    await rm(inRoot("run/arca/buildkitd.toml"), { force: true });
    await rm(inRoot("run/arca/buildkitd.env"), { force: true });
    await writeFile(inRoot("usr/local/bin/buildkitd"), BUILDKITD_STAND_IN, { mode: 0o755 });
  }
});
