import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { promisify } from "node:util";
import { BuildKitError, build, createControlClient, type StatusResponse } from "../src/buildkit/index.js";
import { createRegistryServer, ImageStore } from "../src/images/index.js";
import { parseDialAddress } from "../src/transport/index.js";
import { type Buildkitd, freePort, startBuildkitd } from "./support/buildkitd.js";
import { writeBusyboxRootfs } from "./support/busybox-rootfs.js";
import { imageFiles } from "./support/image-files.js";

const run = promisify(execFile);
const repo = path.resolve(import.meta.dirname, "..");

/** Runs the real `arca` CLI (through tsx) as a child process. */
async function arca(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const r = await run(process.execPath, ["--import", "tsx", path.join(repo, "src/cli/run.ts"), ...args], {
      cwd: repo,
      maxBuffer: 64 << 20,
    });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof e.code === "number" ? e.code : 1, stdout: e.stdout ?? "", stderr: e.stderr ?? "" };
  }
}

async function writeTree(root: string, files: Record<string, string>): Promise<void> {
  for (const [rel, body] of Object.entries(files)) {
    const p = path.join(root, rel);
    await mkdir(path.dirname(p), { recursive: true });
    await writeFile(p, body);
  }
}

const MULTI_STAGE = `FROM busybox:local AS base
ARG GREETING=hello
ENV APP_HOME=/app
WORKDIR /app
RUN echo "$GREETING" > greeting.txt
COPY src/ ./src/

FROM base AS broken
RUN exit 7

FROM busybox:local AS final
ARG VERSION=0
ENV APP_VERSION=$VERSION
LABEL org.example.stage=final
COPY --from=base /app /app
WORKDIR /app
USER nobody
CMD ["cat", "/app/greeting.txt"]
`;

describe("build engine against a real buildkitd", () => {
  let tmp: string;
  let dataRoot: string;
  let port: number;
  let bk: Buildkitd;
  let store: ImageStore;
  let registry: ReturnType<typeof createRegistryServer>;
  const registryLog: string[] = [];

  before(async () => {
    tmp = await mkdtemp(path.join(os.tmpdir(), "arca-e2e-"));
    dataRoot = path.join(tmp, "data");
    port = await freePort();
    bk = await startBuildkitd({ registryPort: port });
    const rootfs = path.join(tmp, "busybox.tar");
    await writeBusyboxRootfs(rootfs);
    const imported = await arca(["image", "import", "--data-root", dataRoot, rootfs, "busybox:local"]);
    assert.equal(imported.code, 0, imported.stderr);
    // The store's registry endpoint on the port buildkitd mirrors docker.io to (base image pulls).
    store = await ImageStore.open(path.join(dataRoot, "images"));
    registry = createRegistryServer(store, { log: (l) => registryLog.push(l) });
    await registry.listen(`tcp://127.0.0.1:${port}`);
  });

  after(async () => {
    await registry?.close();
    store?.close();
    await bk?.stop();
    await rm(tmp, { recursive: true, force: true });
  });

  test("arca build: multi-stage Dockerfile, .dockerignore, --target, --build-arg, into the store", async () => {
    const ctx = path.join(tmp, "multi");
    await writeTree(ctx, {
      Dockerfile: MULTI_STAGE,
      ".dockerignore": "**/*.log\n!src/keep.log\nsecret/\n",
      "src/main.txt": "main\n",
      "src/debug.log": "noise\n",
      "src/keep.log": "kept\n",
      "src/deep/a/b.log": "noise\n",
      "secret/key": "do not send\n",
    });
    const r = await arca([
      "build",
      "-t",
      "demo:1",
      "-t",
      "demo:latest",
      "--build-arg",
      "GREETING=hi",
      "--build-arg",
      "VERSION=42",
      "--target",
      "final",
      "--buildkit-addr",
      bk.addr,
      // The CLI serves its own endpoint for the push; pulls come through the mirror port.
      "--registry",
      "tcp://127.0.0.1:0",
      "--data-root",
      dataRoot,
      ctx,
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /#\d+ \[final \d\/\d\] COPY --from=base \/app \/app/);
    assert.match(r.stderr, /Successfully built sha256:[a-f0-9]{64}/);
    // The push into the store shows the image's own names, not the registry endpoint's.
    assert.match(r.stderr, /naming to docker\.io\/library\/demo:(1|latest)/);
    assert.doesNotMatch(r.stderr, /pushing|127\.0\.0\.1/);

    const img = await store.inspect("demo:1");
    assert.deepEqual(img.RepoTags.sort(), ["demo:1", "demo:latest"]);
    assert.match(r.stderr, new RegExp(`Successfully built ${img.Id}`));
    const cfg = img.Config as Record<string, unknown>;
    assert.equal(cfg.User, "nobody");
    assert.equal(cfg.WorkingDir, "/app");
    assert.deepEqual(cfg.Cmd, ["cat", "/app/greeting.txt"]);
    assert.deepEqual(cfg.Labels, { "org.example.stage": "final" });
    assert.ok((cfg.Env as string[]).includes("APP_VERSION=42"));
    assert.ok(!(cfg.Env as string[]).some((e) => e.startsWith("APP_HOME=")), "ENV of another stage leaked");

    const files = await imageFiles(store, "demo:1");
    assert.equal(files.get("app/greeting.txt")?.content, "hi\n");
    assert.equal(files.get("app/src/main.txt")?.content, "main\n");
    assert.equal(files.get("app/src/keep.log")?.content, "kept\n");
    assert.ok(!files.has("app/src/debug.log"), ".dockerignore **/*.log not applied");
    assert.ok(!files.has("app/src/deep/a/b.log"), ".dockerignore **/*.log not applied in deep dirs");
    assert.ok(!files.has("app/secret/key"), "excluded dir sent");
    assert.ok(files.has("bin/busybox"), "base image layers missing");
  });

  test("build(): cache is used, --no-cache rebuilds, only changed files cross", async () => {
    {
      const ctx = path.join(tmp, "cache");
      await writeTree(ctx, {
        Dockerfile: "FROM busybox:local\nCOPY . /ctx\nRUN cat /ctx/a.txt > /copy\n",
        "a.txt": "1",
      });
      const opts = { addr: bk.addr, context: ctx, imageStore: { registryHost: `127.0.0.1:${port}` } };
      // The registry endpoint takes pushes only for names a build registered.
      const grant = registry.allowPush(["cache:1", "cache:2", "cache:3"]);
      after(() => grant.release());
      const first = await build({ ...opts, tags: ["cache:1"] });
      assert.ok(first.imageId);
      const cachedRun = await collectCached({ ...opts, tags: ["cache:2"] });
      assert.equal(cachedRun.result.imageId, first.imageId);
      assert.ok(
        cachedRun.cached.some((n) => n.includes("RUN cat")),
        `RUN not cached: ${cachedRun.cached}`,
      );
      const noCache = await collectCached({ ...opts, tags: ["cache:3"], noCache: true });
      assert.ok(!noCache.cached.some((n) => n.includes("RUN cat")), "RUN cached despite noCache");
    }
  });

  test("build(): pushing into the store sends only blobs it lacks", async () => {
    const base = (await store.inspect("busybox:local")).Layers[0]?.digest as string;
    const ctx = path.join(tmp, "push");
    await writeTree(ctx, { Dockerfile: "FROM busybox:local\nRUN echo pushed > /pushed\n" });
    registryLog.length = 0;
    const grant = registry.allowPush(["pushed:1"]);
    after(() => grant.release());
    const r = await build({
      addr: bk.addr,
      context: ctx,
      tags: ["pushed:1"],
      imageStore: { registryHost: `127.0.0.1:${port}` },
    });
    const img = await store.inspect("pushed:1");
    assert.equal(img.Id, r.imageId);
    assert.equal(img.Layers[0]?.digest, base);
    const newLayer = img.Layers[1]?.digest as string;
    const uploads = registryLog
      .map(decodeURIComponent)
      .filter((l) => /registry: (PUT|PATCH|POST) \S*\/blobs\/uploads/.test(l));
    assert.ok(
      uploads.some((l) => l.includes(newLayer)),
      `new layer not uploaded: ${uploads.join("\n")}`,
    );
    assert.ok(!uploads.some((l) => l.includes(base)), `base layer crossed again: ${uploads.join("\n")}`);
  });

  test("build(): --output type=oci and type=local", async () => {
    const ctx = path.join(tmp, "out");
    await writeTree(ctx, { Dockerfile: "FROM busybox:local\nRUN echo out > /result.txt\n" });
    const ociTar = path.join(tmp, "out.tar");
    await build({ addr: bk.addr, context: ctx, outputs: [`type=oci,dest=${ociTar}`] });
    const { stdout } = await run("tar", ["-tf", ociTar]);
    assert.match(stdout, /^index\.json$/m);
    assert.match(stdout, /^oci-layout$/m);
    assert.match(stdout, /^blobs\/sha256\/[a-f0-9]{64}$/m);

    // A device as dest is written in place, never replaced by a file.
    await build({ addr: bk.addr, context: ctx, outputs: ["type=tar,dest=/dev/null"] });
    assert.ok((await stat("/dev/null")).isCharacterDevice(), "/dev/null was replaced");

    const dir = path.join(tmp, "local-out");
    await build({ addr: bk.addr, context: ctx, outputs: [`type=local,dest=${dir}`] });
    assert.equal(await readFile(path.join(dir, "result.txt"), "utf8"), "out\n");
    assert.ok((await stat(path.join(dir, "bin/busybox"))).isFile());
  });

  test("build(): a second build of a 20,000-file context transfers only the changed file", async () => {
    const ctx = path.join(tmp, "many");
    await mkdir(ctx, { recursive: true });
    await writeFile(
      path.join(ctx, "Dockerfile"),
      "FROM busybox:local\nCOPY . /ctx\nRUN ls -R /ctx | wc -l\n",
    );
    for (let d = 0; d < 100; d++) {
      const dir = path.join(ctx, `d${d}`);
      await mkdir(dir);
      await Promise.all(
        Array.from({ length: 200 }, (_, f) => writeFile(path.join(dir, `f${f}.txt`), `${d}/${f}\n`)),
      );
    }
    const opts = { addr: bk.addr, context: ctx, outputs: [`type=tar,dest=${path.join(tmp, "many.tar")}`] };
    const first = (await build(opts)).transfer.dirs.context;
    assert.ok(first && first.filesSent >= 20_000, `first build sent ${first?.filesSent} files`);
    await writeFile(path.join(ctx, "d42", "f7.txt"), "changed\n");
    const second = (await build(opts)).transfer.dirs.context;
    assert.equal(second?.filesSent, 1, `second build sent ${second?.filesSent} context files`);
    assert.equal(second?.bytesSent, "changed\n".length);
  });

  test("build(): secrets, no network for RUN, a Dockerfile outside the context", async () => {
    const ctx = path.join(tmp, "secret-ctx");
    const elsewhere = path.join(tmp, "elsewhere");
    await writeTree(ctx, { "data.txt": "from context\n" });
    await writeTree(elsewhere, {
      "Build.Dockerfile": [
        "FROM busybox:local",
        "COPY data.txt /data.txt",
        "RUN --mount=type=secret,id=token cat /run/secrets/token > /token-copy",
        "RUN --mount=type=secret,id=fromenv cat /run/secrets/fromenv > /env-copy",
        "RUN cat /proc/net/dev > /netdev",
        "",
      ].join("\n"),
    });
    await writeFile(path.join(tmp, "token.txt"), "s3cret");
    process.env.ARCA_TEST_SECRET = "from-env";
    const dir = path.join(tmp, "secret-out");
    await build({
      addr: bk.addr,
      context: ctx,
      dockerfile: path.join(elsewhere, "Build.Dockerfile"),
      secrets: { token: { file: path.join(tmp, "token.txt") }, fromenv: { env: "ARCA_TEST_SECRET" } },
      outputs: [`type=local,dest=${dir}`],
    });
    assert.equal(await readFile(path.join(dir, "data.txt"), "utf8"), "from context\n");
    assert.equal(await readFile(path.join(dir, "token-copy"), "utf8"), "s3cret");
    assert.equal(await readFile(path.join(dir, "env-copy"), "utf8"), "from-env");
    // RUN steps get a network namespace with loopback only.
    const ifaces = (await readFile(path.join(dir, "netdev"), "utf8"))
      .split("\n")
      .slice(2)
      .map((l) => l.split(":")[0]?.trim())
      .filter(Boolean);
    assert.deepEqual(ifaces, ["lo"]);
  });

  test("Control client: ListWorkers, Info, DiskUsage and Prune against buildkitd", async () => {
    const client = createControlClient(parseDialAddress(bk.addr));
    try {
      const workers = await client.control.listWorkers({});
      assert.ok(workers.record.length >= 1);
      assert.ok(workers.record[0]?.platforms.some((p) => p.OS === "linux"));
      const info = await client.control.info({});
      assert.equal(info.buildkitVersion?.version, "v0.32.2");
      const du = await client.control.diskUsage({});
      assert.ok(du.record.length > 0, "no cache records after builds");
      const pruned: string[] = [];
      for await (const r of client.control.prune({ all: true })) pruned.push(r.ID);
      assert.ok(pruned.length > 0, "prune reclaimed nothing");
      const after = await client.control.diskUsage({});
      assert.ok(after.record.length < du.record.length);
    } finally {
      client.close();
    }
  });

  test("build(): clear errors for syntax errors, a missing Dockerfile, an unknown target and a failing RUN", async () => {
    const ctx = path.join(tmp, "errors");
    await writeTree(ctx, {
      Dockerfile: "FROM busybox:local\nRUN echo ok\nRUNN nope\n",
      "run.Dockerfile": "FROM busybox:local\nRUN echo before\nRUN exit 3\n",
    });
    const outputs = [`type=tar,dest=${path.join(tmp, "err.tar")}`];
    const fail = async (o: Partial<Parameters<typeof build>[0]>) => {
      try {
        await build({ addr: bk.addr, context: ctx, outputs, ...o });
      } catch (err) {
        assert.ok(err instanceof BuildKitError, String(err));
        return err;
      }
      assert.fail("build succeeded");
    };
    const syntax = await fail({});
    assert.match(syntax.message, /Dockerfile:3/);
    assert.match(syntax.message, /unknown instruction: RUNN/i);
    const missing = await fail({ dockerfile: path.join(ctx, "nope.Dockerfile") });
    assert.match(missing.message, /nope\.Dockerfile.*(no such file|not found)/i);
    const target = await fail({ dockerfile: path.join(ctx, "run.Dockerfile"), target: "nosuch" });
    assert.match(target.message, /target stage "?nosuch"? could not be found/);
    const runFail = await fail({ dockerfile: path.join(ctx, "run.Dockerfile") });
    assert.equal(runFail.code, "build_failed");
    assert.match(runFail.message, /run\.Dockerfile:3/);
    assert.match(runFail.message, />>> RUN exit 3/);
    assert.match(runFail.message, /exit code: 3/);
  });

  test("build(): aborting the signal cancels the Solve and its RUN process", async () => {
    const ctx = path.join(tmp, "abort");
    await writeTree(ctx, { Dockerfile: "FROM busybox:local\nRUN echo started && sleep 937\n" });
    const ac = new AbortController();
    const started = Date.now();
    const p = build({
      addr: bk.addr,
      context: ctx,
      outputs: [`type=tar,dest=${path.join(tmp, "abort.tar")}`],
      signal: ac.signal,
      onProgress: (s) => {
        if (s.logs.some((l) => Buffer.from(l.msg).toString().includes("started"))) ac.abort();
      },
    });
    await assert.rejects(p, (err: unknown) => err instanceof BuildKitError && err.code === "canceled");
    assert.ok(Date.now() - started < 30_000);
    // The container's process is gone soon after.
    let alive = true;
    for (let i = 0; i < 50 && alive; i++) {
      alive = (await run("ps", ["-eo", "args"])).stdout.includes("sleep 937");
      if (alive) await new Promise((r) => setTimeout(r, 100));
    }
    assert.equal(alive, false, "RUN process still running after abort");
  });
});

async function collectCached(opts: Parameters<typeof build>[0]) {
  const cached = new Set<string>();
  const result = await build({
    ...opts,
    onProgress: (s: StatusResponse) => {
      for (const v of s.vertexes) if (v.cached) cached.add(v.name);
    },
  });
  return { result, cached: [...cached] };
}
