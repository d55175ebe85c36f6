import assert from "node:assert/strict";
import { copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { freePort } from "./support/buildkitd.js";
import { seedBusybox } from "./support/busybox-rootfs.js";
import { type DaemonProc, startDaemon } from "./support/daemon.js";
import { dockerCli, dockerConfigWithBuildx } from "./support/docker-cli.js";
import { startTestRegistry, type TestRegistry } from "./support/test-registry.js";
import { tool } from "./support/tools.js";

// A real upstream registry (distribution, TLS with a test CA, htpasswd auth) reached only through
// the daemon's egress proxy under a name from the policy's hosts map: FROM, --push and registry
// cache work with the client's credentials; wrong credentials and a registry that is down fail
// clearly. Nothing is silently dropped.
describe("egress: builds pull from, push to and cache in an upstream registry", { timeout: 600_000 }, () => {
  let tmp: string;
  let dataRoot: string;
  let daemon: DaemonProc;
  let reg: TestRegistry;
  let env: NodeJS.ProcessEnv;
  let badConfig: string;
  let ctxCount = 0;

  const { cli, ok } = dockerCli(() => env);
  const context = async (dockerfile: string): Promise<string> => {
    const dir = path.join(tmp, `ctx-${++ctxCount}`);
    await mkdir(dir, { recursive: true });
    await writeFile(path.join(dir, "Dockerfile"), dockerfile);
    return dir;
  };
  /** A docker config dir with these credentials for the registry, and the buildx plugin. */
  const dockerConfig = async (name: string, user: string, password: string): Promise<string> => {
    const dir = await dockerConfigWithBuildx(path.join(tmp, name));
    const auth = Buffer.from(`${user}:${password}`).toString("base64");
    await writeFile(path.join(dir, "config.json"), JSON.stringify({ auths: { [reg.host]: { auth } } }));
    return dir;
  };

  before(async () => {
    tmp = await mkdtemp(path.join(os.tmpdir(), "arca-egress-registry-"));
    dataRoot = path.join(tmp, "data");
    reg = await startTestRegistry(path.join(tmp, "registry"));
    await mkdir(dataRoot, { recursive: true });
    await writeFile(
      path.join(dataRoot, "egress.json"),
      JSON.stringify({
        mode: "audit",
        hosts: { "registry.arca.test": "127.0.0.1", "down.arca.test": "127.0.0.1" },
      }),
    );
    const certs = path.join(dataRoot, "certs.d", reg.host);
    await mkdir(certs, { recursive: true });
    await copyFile(reg.caFile, path.join(certs, "ca.crt"));
    await seedBusybox(dataRoot, tmp);
    daemon = startDaemon(dataRoot, path.join(tmp, "arca.sock"));
    await daemon.waitFor(/ready in/);
    env = {
      ...process.env,
      DOCKER_HOST: `unix://${path.join(tmp, "arca.sock")}`,
      DOCKER_CONFIG: await dockerConfig("docker-config", reg.user, reg.password),
      BUILDX_CONFIG: path.join(tmp, "buildx-config"),
      BUILDX_BUILDER: "",
    };
    badConfig = await dockerConfig("bad-config", reg.user, "wrong-password");
  });

  after(async () => {
    if (process.env.ARCA_TEST_DEBUG) console.log(daemon?.output());
    await daemon?.stop();
    await reg?.stop();
    await rm(tmp, { recursive: true, force: true });
  });

  test("buildx --push reaches the registry with the client's credentials and lands in the store too", async () => {
    const ctx = await context(["FROM busybox:local", "RUN echo pushed-base > /base.txt", ""].join("\n"));
    const r = await ok(["buildx", "build", "--progress=plain", "--push", "-t", `${reg.host}/base:1`, ctx]);
    assert.match(r.stderr, new RegExp(`pushing manifest for ${reg.host.replace(/\./g, "\\.")}/base:1`));
    const tags = await reg.api("/v2/base/tags/list");
    assert.equal(tags.status, 200);
    assert.deepEqual((tags.body as { tags: string[] }).tags, ["1"]);
    const images = await ok(["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    assert.match(images.stdout, new RegExp(`^${reg.host.replace(/\./g, "\\.")}/base:1$`, "m"));
  });

  test("a push with wrong credentials fails and says so", async () => {
    const ctx = await context(["FROM busybox:local", "RUN echo denied > /x", ""].join("\n"));
    const r = await cli(["buildx", "build", "--push", "-t", `${reg.host}/denied:1`, ctx], {
      DOCKER_CONFIG: badConfig,
    });
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /401 Unauthorized|unauthorized|authorization/i);
    assert.equal((await reg.api("/v2/denied/tags/list")).status, 404);
  });

  test("a push to a registry that is down fails clearly (exit ≠ 0), never reports success", async () => {
    const port = await freePort();
    const ctx = await context(["FROM busybox:local", "RUN echo nowhere > /x", ""].join("\n"));
    const r = await cli(["buildx", "build", "--push", "-t", `down.arca.test:${port}/x:1`, ctx]);
    assert.notEqual(r.code, 0, r.stderr);
    assert.match(r.stderr, new RegExp(`down\\.arca\\.test:${port}`));
    assert.match(r.stderr, /refused|502|Bad Gateway|failed/i);
  });

  test("FROM the upstream registry: classic (X-Registry-Config) and buildx (session auth) pull through egress", async () => {
    await ok(["rmi", `${reg.host}/base:1`]);
    const ctx = await context([`FROM ${reg.host}/base:1`, "RUN cat /base.txt", ""].join("\n"));
    const classic = await cli(["build", "--no-cache", "-t", "from-upstream:classic", ctx], {
      DOCKER_BUILDKIT: "0",
    });
    assert.equal(classic.code, 0, `${classic.stdout}\n${classic.stderr}`);
    assert.match(classic.stdout, /pushed-base/);
    const buildx = await ok(["buildx", "build", "--progress=plain", "--no-cache", "--pull", ctx]);
    assert.match(buildx.stderr, /pushed-base/);
    const log = (await import("node:fs")).readFileSync(path.join(dataRoot, "egress.log"), "utf8");
    assert.match(log, /"host":"registry\.arca\.test"/);
  });

  test("FROM with wrong credentials fails with the registry's answer", async () => {
    const ctx = await context([`FROM ${reg.host}/base:1`, "RUN true", ""].join("\n"));
    const r = await cli(["buildx", "build", "--no-cache", "--pull", ctx], { DOCKER_CONFIG: badConfig });
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /401 Unauthorized|unauthorized|authorization/i);
  });

  test("--cache-to type=registry, then --cache-from after the local cache is gone: steps are cached", async () => {
    const ctx = await context(
      [
        "FROM busybox:local",
        "RUN head -c 32 /dev/urandom | od -An -tx1 > /random.txt && cat /random.txt",
        "",
      ].join("\n"),
    );
    const ref = `${reg.host}/cache:1`;
    const first = path.join(tmp, "cache-first.iid");
    await ok([
      "buildx",
      "build",
      "--progress=plain",
      "--cache-to",
      `type=registry,ref=${ref},mode=max`,
      "--iidfile",
      first,
      ctx,
    ]);
    assert.equal((await reg.api("/v2/cache/tags/list")).status, 200);
    await ok(["builder", "prune", "-af"]);
    const again = path.join(tmp, "cache-again.iid");
    const r = await ok([
      "buildx",
      "build",
      "--progress=plain",
      "--cache-from",
      `type=registry,ref=${ref}`,
      "--iidfile",
      again,
      ctx,
    ]);
    // The step did not run again: no output of it, and its random bytes are the first build's (same layers).
    // (BuildKit shows it CACHED, or the cached layer's download when the store lacks that blob.)
    assert.match(
      r.stderr,
      /RUN head -c 32 \/dev\/urandom[^\n]*\n#\d+ (CACHED|sha256:[0-9a-f]{64} \d+B \/ \d+B)/,
    );
    const layers = async (iid: string) =>
      (await ok(["image", "inspect", "--format", "{{json .RootFS.Layers}}", await readFile(iid, "utf8")]))
        .stdout;
    assert.equal(await layers(again), await layers(first));
  });

  test("--push and --cache-to localhost:PORT reach a registry on the user's host (not the sandbox's loopback); steps cannot", async () => {
    const local = await startTestRegistry(path.join(tmp, "local-registry"), "localhost", { plain: true });
    try {
      const ctx = await context(["FROM busybox:local", "RUN echo local > /local.txt", ""].join("\n"));
      const pushed = await ok([
        "buildx",
        "build",
        "--progress=plain",
        "--push",
        "-t",
        `localhost:${local.port}/app:1`,
        "--cache-to",
        `type=registry,ref=localhost:${local.port}/cache:1,mode=max`,
        ctx,
      ]);
      const catalog = (await local.api("/v2/_catalog")).body as { repositories: string[] };
      assert.deepEqual(catalog.repositories.sort(), ["app", "cache"]);
      // Progress names the registry as the user did, not the name the push went out under.
      assert.match(pushed.stderr, new RegExp(`pushing manifest for localhost:${local.port}/app:1`));
      assert.doesNotMatch(pushed.stderr, /host-loopback\.arca\.internal/);
      // And the cache comes back from there once the local one is gone (buildx sends the import in
      // LLBBridge.Solve's CacheImports and the frontend's cache-imports).
      await ok(["builder", "prune", "-af"]);
      const cached = await ok([
        "buildx",
        "build",
        "--progress=plain",
        "--cache-from",
        `type=registry,ref=localhost:${local.port}/cache:1`,
        ctx,
      ]);
      assert.match(
        cached.stderr,
        /importing cache manifest from localhost:\d+\/cache:1\n(#\d+ [^\n]*\n)*#\d+ DONE/,
      );
      assert.doesNotMatch(cached.stderr, /ERROR/);
      assert.match(cached.stderr, /RUN echo local > \/local\.txt\n#\d+ CACHED/);
      // The host's loopback is opened to buildkitd only, for that build only: a step is refused.
      const probe = path.join(tmp, `ctx-${++ctxCount}`);
      await mkdir(probe, { recursive: true });
      await copyFile(tool("arca-net-probe"), path.join(probe, "probe"));
      await writeFile(
        path.join(probe, "Dockerfile"),
        `FROM busybox:local\nCOPY probe /probe\nRUN /probe get http://host-loopback.arca.internal:${local.port}/v2/ || true\n`,
      );
      const r = await ok(["buildx", "build", "--progress=plain", "--no-cache", probe]);
      assert.match(r.stderr, /403 Forbidden[^\n]*host loopback/);
    } finally {
      await local.stop();
    }
  });
});
