import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { createReadStream } from "node:fs";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { setTimeout as delay } from "node:timers/promises";
import { promisify } from "node:util";
import { BuildKitError, type BuildOptions, build, type StatusResponse } from "../src/buildkit/index.js";
import { ImageStore, importRootfs, requestPushGrant } from "../src/images/index.js";
import { SANDBOX_REGISTRY_HOST } from "../src/sandbox/index.js";
import { writeBusyboxRootfs } from "./support/busybox-rootfs.js";
import { type DaemonProc, startDaemon } from "./support/daemon.js";
import { imageFiles } from "./support/image-files.js";
import { NETWORK_PROBE_RUN } from "./support/network-probe.js";

const run = promisify(execFile);

async function runcList(dataRoot: string): Promise<{ id: string; pid: number; status: string }[]> {
  const root = path.join(dataRoot, "containers/runc-state");
  const { stdout } = await run("runc", ["--root", root, "list", "--format", "json"]);
  // runc prints "null" when it has no containers.
  return (JSON.parse(stdout || "null") ?? []) as { id: string; pid: number; status: string }[];
}

/** The running sandbox container, through runc's own view of the runtime's state dir (waits up to 20 s). */
async function sandboxContainer(dataRoot: string): Promise<{ id: string; pid: number }> {
  for (let i = 0; i < 200; i++) {
    const c = (await runcList(dataRoot)).find((x) => x.status === "running");
    if (c) return c;
    await delay(100);
  }
  throw new Error("no running sandbox container");
}

/** buildkitd of this test's sandbox: the child of the container's init (other sandboxes may run on the machine). */
async function sandboxBuildkitd(dataRoot: string): Promise<number> {
  const { pid } = await sandboxContainer(dataRoot);
  for (let i = 0; i < 100; i++) {
    const r = await run("pgrep", ["-P", String(pid), "-x", "buildkitd"]).catch(() => ({ stdout: "" }));
    const found = r.stdout.trim().split("\n").filter(Boolean);
    if (found.length === 1) return Number(found[0]);
    await delay(100);
  }
  throw new Error("buildkitd not found in the sandbox");
}

async function inSandbox(dataRoot: string, ...cmd: string[]): Promise<string> {
  const { id } = await sandboxContainer(dataRoot);
  const { stdout } = await run("runc", [
    "--root",
    path.join(dataRoot, "containers/runc-state"),
    "exec",
    id,
    ...cmd,
  ]);
  return stdout;
}

function interfaces(procNetDev: string): string[] {
  return procNetDev
    .split("\n")
    .slice(2)
    .map((l) => l.split(":")[0]?.trim() ?? "")
    .filter(Boolean);
}

describe("arca daemon with BuildKit in the network-less sandbox", () => {
  let tmp: string;
  let dataRoot: string;
  let daemon: DaemonProc;
  let store: ImageStore;
  let addr: string;
  /** build() into the daemon's store: its registry endpoint takes the push once the daemon granted the tags. */
  const storeBuild = async (opts: BuildOptions & { tags: string[] }) => {
    const grant = await requestPushGrant(path.join(dataRoot, "run", "registry-grants.sock"), opts.tags);
    try {
      return await build({
        ...opts,
        imageStore: { registryHost: SANDBOX_REGISTRY_HOST, danglingPath: grant.danglingPath },
      });
    } finally {
      grant.release();
    }
  };

  before(async () => {
    tmp = await mkdtemp(path.join(os.tmpdir(), "arca-sandbox-"));
    dataRoot = path.join(tmp, "data");
    addr = `unix://${path.join(dataRoot, "run/sandbox/buildkitd.sock")}`;
    store = await ImageStore.open(path.join(dataRoot, "images"));
    const rootfs = path.join(tmp, "busybox.tar");
    await writeBusyboxRootfs(rootfs);
    await importRootfs(store, createReadStream(rootfs), { name: "busybox:local" });
  });

  after(async () => {
    await daemon?.stop();
    store?.close();
    await rm(tmp, { recursive: true, force: true });
  });

  test("starts from a fresh data root: image assembled and loaded, sandbox up, ready time printed", async () => {
    daemon = startDaemon(dataRoot);
    const m = await daemon.waitFor(/ready in ([\d.]+)s \(sandbox image loaded/);
    assert.ok(Number(m[1]) > 0);
    assert.match(daemon.output(), /sandbox image sha256:[a-f0-9]{64} [\d.]+ MB in [\d.]+ s/);
    const sandbox = await store.inspect("arca-buildkit:v0.32.2");
    assert.equal(
      (sandbox.Config?.Labels as Record<string, string> | undefined)?.["com.arca.role"],
      "buildkit",
    );
  });

  test("a build through the channel lands in the store", async () => {
    const ctx = path.join(tmp, "app");
    await mkdir(ctx, { recursive: true });
    await writeFile(
      path.join(ctx, "Dockerfile"),
      "FROM busybox:local\nCOPY hello.txt /hello.txt\nRUN cat /hello.txt > /copy\n",
    );
    await writeFile(path.join(ctx, "hello.txt"), "through the channel\n");
    const r = await storeBuild({ addr, context: ctx, tags: ["channel:1"] });
    const img = await store.inspect("channel:1");
    assert.equal(img.Id, r.imageId);
    const files = await imageFiles(store, "channel:1");
    assert.equal(files.get("copy")?.content, "through the channel\n");
  });

  test("the sandbox has only lo; RUN steps reach neither the channel ports nor any network; no TCP listener on the host", async () => {
    // Besides lo, only the step bridge and its steps' veths: nothing leads out of the sandbox.
    const ifs = interfaces(await inSandbox(dataRoot, "cat", "/proc/net/dev"));
    assert.ok(ifs.includes("lo"), ifs.join(" "));
    for (const i of ifs) assert.match(i, /^(lo|arcabr0|veth[0-9a-f]+)$/, `unexpected interface ${i}`);
    // Routes: at most the step bridge's own subnet, never a default route.
    const routes = (await inSandbox(dataRoot, "cat", "/proc/net/route")).trim().split("\n").slice(1);
    for (const r of routes) assert.match(r, /^arcabr0\s+0000590A\s+00000000\s/, `sandbox route: ${r}`);

    const ctx = path.join(tmp, "probe");
    await mkdir(ctx, { recursive: true });
    await writeFile(
      path.join(ctx, "Dockerfile"),
      [
        "FROM busybox:local",
        // Fails the build if a channel port is reachable (or if the probe itself cannot work).
        NETWORK_PROBE_RUN,
        "RUN cat /proc/net/dev > /netdev && cat /proc/net/route > /route",
        "",
      ].join("\n"),
    );
    const out = path.join(tmp, "probe-out");
    await build({ addr, context: ctx, outputs: [`type=local,dest=${out}`] });
    assert.deepEqual(interfaces(await readFile(path.join(out, "netdev"), "utf8")), ["lo"]);
    assert.equal(
      (await readFile(path.join(out, "route"), "utf8")).trim().split("\n").length,
      1,
      "RUN has a route",
    );

    // buildkitd listens on 127.0.0.1:8088 inside the sandbox only.
    const refused = await new Promise<boolean>((resolve) => {
      const s = net.connect(8088, "127.0.0.1");
      s.once("connect", () => {
        s.destroy();
        resolve(false);
      });
      s.once("error", () => resolve(true));
    });
    assert.ok(refused, "buildkitd reachable over host TCP");
  });

  test("kill -9 of buildkitd mid-build: clear error, sandbox back within seconds, cache intact", async () => {
    const ctx = path.join(tmp, "crash");
    await mkdir(ctx, { recursive: true });
    await writeFile(path.join(ctx, "Dockerfile"), "FROM busybox:local\nRUN echo cached-layer > /layer\n");
    await storeBuild({ addr, context: ctx, tags: ["crash:1"] });

    const slow = path.join(tmp, "slow");
    await mkdir(slow, { recursive: true });
    await writeFile(path.join(slow, "Dockerfile"), "FROM busybox:local\nRUN echo started && sleep 60\n");
    const pid = await sandboxBuildkitd(dataRoot);
    let killed = false;
    const failing = build({
      addr,
      context: slow,
      outputs: [`type=tar,dest=${path.join(tmp, "slow.tar")}`],
      onProgress: (s: StatusResponse) => {
        if (!killed && s.logs.some((l) => Buffer.from(l.msg).toString().includes("started"))) {
          killed = true;
          process.kill(pid, "SIGKILL");
        }
      },
    });
    await assert.rejects(failing, (err: unknown) => {
      assert.ok(err instanceof BuildKitError, String(err));
      assert.equal(err.code, "unavailable");
      assert.match(err.message, /lost connection to BuildKit/);
      return true;
    });
    assert.ok(killed);

    // Back within seconds, the next build hits the cache.
    const t0 = Date.now();
    const cached = new Set<string>();
    await storeBuild({
      addr,
      context: ctx,
      tags: ["crash:2"],
      onProgress: (s) => {
        for (const v of s.vertexes) if (v.cached) cached.add(v.name);
      },
    });
    assert.ok(Date.now() - t0 < 30_000, `recovery took ${Date.now() - t0} ms`);
    assert.ok(
      [...cached].some((n) => n.includes("RUN echo cached-layer")),
      `not cached: ${[...cached]}`,
    );
  });

  test("daemon SIGKILL and restart: images, tags and cache kept; image not reloaded", async () => {
    const before = await sandboxContainer(dataRoot);
    await daemon.stop("SIGKILL");
    daemon = startDaemon(dataRoot);
    await daemon.waitFor(/ready in ([\d.]+)s \(sandbox image unchanged/);
    const after = await sandboxContainer(dataRoot);
    assert.equal(after.id, before.id, "sandbox container was recreated");
    assert.ok(await store.inspect("channel:1"));
    assert.ok(await store.inspect("crash:1"));
    const cached = new Set<string>();
    await storeBuild({
      addr,
      context: path.join(tmp, "crash"),
      tags: ["crash:3"],
      onProgress: (s) => {
        for (const v of s.vertexes) if (v.cached) cached.add(v.name);
      },
    });
    assert.ok(
      [...cached].some((n) => n.includes("RUN echo cached-layer")),
      `not cached: ${[...cached]}`,
    );
    await delay(0);
  });

  test("daemon SIGTERM stops the sandbox: no orphan processes", async () => {
    const { pid: init } = await sandboxContainer(dataRoot);
    const bk = await sandboxBuildkitd(dataRoot);
    assert.equal(await daemon.stop("SIGTERM"), 0);
    const running = (await runcList(dataRoot)).filter((c) => c.status === "running");
    assert.equal(running.length, 0);
    for (const p of [init, bk]) {
      assert.throws(() => process.kill(p, 0), "sandbox process still alive");
    }
  });
});
