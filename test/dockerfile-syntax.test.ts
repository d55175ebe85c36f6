/**
 * `# syntax=docker/dockerfile:…` against Arca with no network: the store
 * serves the Dockerfile frontend image set-up built from the pinned BuildKit
 * module, and BuildKit (docker.io mirrored to Arca's registry endpoint)
 * resolves it from there, on every client path.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdir, mkdtemp, readFile, rm, symlink, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { Readable } from "node:stream";
import { after, before, describe, test } from "node:test";
import { promisify } from "node:util";
import { fromBinary } from "@bufbuild/protobuf";
import Docker from "dockerode";
import tar from "tar-stream";
import { StatusResponseSchema } from "../src/buildkit/index.js";
import { seedBusybox } from "./support/busybox-rootfs.js";
import { type DaemonProc, startDaemon } from "./support/daemon.js";
import { tool } from "./support/tools.js";

const run = promisify(execFile);

interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
  ms: number;
}

/** A Dockerfile only a frontend that honours the syntax line and heredocs can build. */
const dockerfile = (syntax: string, word: string) =>
  `# syntax=${syntax}\nFROM busybox:local\nRUN <<EOF\nprintf 'made by %s\\n' ${word} | tee /made.txt\nEOF\n`;

describe("# syntax=docker/dockerfile:… builds offline from the store (buildx, classic, dockerode)", () => {
  let tmp: string;
  let dataRoot: string;
  let socket: string;
  let daemon: DaemonProc;
  let env: NodeJS.ProcessEnv;
  /** `1.26.0` and friends, from the store. */
  let version: string;
  let minor: string;
  let manifestDigest: string;

  const cli = async (args: string[], extraEnv: Record<string, string> = {}): Promise<CliResult> => {
    const t0 = performance.now();
    try {
      const r = await run("docker", args, { env: { ...env, ...extraEnv }, maxBuffer: 64 << 20 });
      return { code: 0, stdout: r.stdout, stderr: r.stderr, ms: performance.now() - t0 };
    } catch (err) {
      const e = err as { code?: number; stdout?: string; stderr?: string };
      return {
        code: typeof e.code === "number" ? e.code : -1,
        stdout: e.stdout ?? "",
        stderr: e.stderr ?? "",
        ms: performance.now() - t0,
      };
    }
  };
  const ok = async (args: string[], extraEnv: Record<string, string> = {}): Promise<CliResult> => {
    const r = await cli(args, extraEnv);
    assert.equal(r.code, 0, `docker ${args.join(" ")}\n${r.stderr}${r.stdout}`);
    return r;
  };
  const context = async (name: string, content: string): Promise<string> => {
    const dir = path.join(tmp, name);
    await mkdir(dir, { recursive: true });
    await writeFile(path.join(dir, "Dockerfile"), content);
    return dir;
  };
  const classic = { DOCKER_BUILDKIT: "0" };
  const frontendTags = async (): Promise<string[]> =>
    (await ok(["images", "docker/dockerfile", "--format", "{{.Tag}}"])).stdout
      .split("\n")
      .filter(Boolean)
      .sort();

  before(async () => {
    tmp = await mkdtemp(path.join(os.tmpdir(), "arca-syntax-"));
    dataRoot = path.join(tmp, "data");
    socket = path.join(tmp, "arca.sock");
    const dockerConfig = path.join(tmp, "docker-config");
    await mkdir(path.join(dockerConfig, "cli-plugins"), { recursive: true });
    await symlink(tool("docker-buildx"), path.join(dockerConfig, "cli-plugins", "docker-buildx"));
    tool("dockerfile-frontend");
    await seedBusybox(dataRoot, tmp);
    daemon = startDaemon(dataRoot, socket);
    await daemon.waitFor(/ready in/);
    env = {
      ...process.env,
      DOCKER_HOST: `unix://${socket}`,
      DOCKER_CONFIG: dockerConfig,
      BUILDX_CONFIG: path.join(tmp, "buildx-config"),
      BUILDX_BUILDER: "",
      DOCKER_BUILDKIT: "1",
    };
    const index = JSON.parse(
      await readFile(path.join(dataRoot, "buildkit/frontend-layout/index.json"), "utf8"),
    );
    manifestDigest = index.manifests[0].digest;
  });

  after(async () => {
    if (process.env.ARCA_TEST_DEBUG) console.log(daemon?.output());
    await daemon?.stop();
    await rm(tmp, { recursive: true, force: true });
  });

  test("the store holds docker/dockerfile:1, :1.X, :1.X.Y: the version buildkitd's own frontend reports", async () => {
    assert.match(daemon.output(), /loaded dockerfile frontend sha256:[0-9a-f]{64} as docker\/dockerfile:1, /);
    // BuildKit's Info: the built-in frontend of the same module, e.g. "Dockerfile: 1.26.0".
    const info = await ok([
      "exec",
      "arca-buildkit",
      "buildctl",
      "--addr",
      "tcp://127.0.0.1:8088",
      "debug",
      "info",
    ]);
    const builtin = /^Dockerfile:\s+(\d+\.\d+\.\d+)$/m.exec(info.stdout)?.[1];
    assert.ok(builtin, info.stdout);
    version = builtin;
    minor = version.split(".").slice(0, 2).join(".");
    assert.deepEqual(await frontendTags(), ["1", minor, version].sort());
    const ids = (await ok(["images", "docker/dockerfile", "--format", "{{.ID}}"])).stdout.trim().split("\n");
    assert.equal(new Set(ids).size, 1, "one image, three tags");
    const inspect = JSON.parse((await ok(["image", "inspect", "docker/dockerfile:1"])).stdout)[0];
    assert.deepEqual(inspect.Config.Entrypoint, ["/bin/dockerfile-frontend"]);
    assert.equal(inspect.Config.Labels["moby.buildkit.frontend.network.none"], "true");
    assert.match(inspect.Config.Labels["moby.buildkit.frontend.caps"], /moby\.buildkit\.frontend\.inputs/);
  });

  test("buildx: :1 and :1.X resolve the store's frontend image, which builds the heredoc", async () => {
    for (const syntax of ["docker/dockerfile:1", `docker/dockerfile:${minor}`]) {
      const word = `buildx-${syntax.replace(/\W/g, "_")}`;
      const ctx = await context(word, dockerfile(syntax, word));
      const r = await ok(["build", "--progress=plain", "-t", `syntax-buildx:${minor}`, ctx]);
      assert.match(r.stderr, new RegExp(`resolve image config for docker-image://docker\\.io/${syntax}\\n`));
      // The frontend image BuildKit ran is exactly the one in the store.
      assert.ok(r.stderr.includes(`docker-image://docker.io/${syntax}@${manifestDigest}`), r.stderr);
      assert.ok(r.stderr.includes(`made by ${word}`), r.stderr);
    }
  });

  test("classic builder (DOCKER_BUILDKIT=0) and dockerode's version 2 take the same frontend", async () => {
    for (const syntax of ["docker/dockerfile:1", `docker/dockerfile:${minor}`]) {
      const word = `classic-${syntax.replace(/\W/g, "_")}`;
      const ctx = await context(word, dockerfile(syntax, word));
      const r = await ok(["build", "-t", "syntax-classic:1", ctx], classic);
      assert.ok(r.stdout.includes(`made by ${word}`), r.stdout);
      assert.match(r.stdout, /Successfully tagged syntax-classic:1/);
    }
    const docker = new Docker({ socketPath: socket });
    const pack = tar.pack();
    pack.entry({ name: "Dockerfile" }, dockerfile("docker/dockerfile:1", "dockerode"));
    pack.finalize();
    const stream = await new Promise<NodeJS.ReadableStream>((resolve, reject) =>
      docker.modem.dial(
        {
          path: "/build?",
          method: "POST",
          file: Readable.from(pack),
          options: { t: "syntax-dode:1", version: "2" },
          isStream: true,
          statusCodes: { 200: true, 400: "bad parameter", 500: "server error" },
        },
        (err: unknown, res: unknown) => (err ? reject(err) : resolve(res as NodeJS.ReadableStream)),
      ),
    );
    const events = await new Promise<Record<string, unknown>[]>((resolve, reject) =>
      docker.modem.followProgress(stream, (err: Error | null, res: Record<string, unknown>[]) =>
        err ? reject(err) : resolve(res),
      ),
    );
    assert.deepEqual(
      events.filter((e) => e.error),
      [],
    );
    const names = events
      .filter((e) => e.id === "moby.buildkit.trace")
      .flatMap((t) =>
        fromBinary(StatusResponseSchema, Buffer.from(t.aux as string, "base64")).vertexes.map((v) => v.name),
      );
    assert.ok(
      names.includes("resolve image config for docker-image://docker.io/docker/dockerfile:1"),
      names.join("\n"),
    );
    assert.ok(
      names.includes(`docker-image://docker.io/docker/dockerfile:1@${manifestDigest}`),
      names.join("\n"),
    );
  });

  test("a syntax image the store does not hold fails at once, naming it", async () => {
    const ctx = await context("missing", dockerfile("docker/dockerfile:1.999", "nobody"));
    for (const extra of [{}, classic]) {
      const progress = "DOCKER_BUILDKIT" in extra ? [] : ["--progress=plain"];
      const r = await cli(["build", ...progress, "-t", "syntax-missing:1", ctx], extra);
      assert.notEqual(r.code, 0, r.stderr + r.stdout);
      assert.match(r.stderr + r.stdout, /docker\.io\/docker\/dockerfile:1\.999/);
      assert.ok(r.ms < 30_000, `failed after ${r.ms.toFixed(0)} ms`);
    }
  });

  test("docker rmi of a frontend tag works; builds naming it then fail; the next daemon start restores it", async () => {
    await ok(["rmi", `docker/dockerfile:${minor}`]);
    assert.deepEqual(await frontendTags(), ["1", version].sort());
    const ctx = await context("after-rmi", dockerfile(`docker/dockerfile:${minor}`, "restored"));
    // Classic first: an earlier identical build must not be answered from memory now that its frontend is gone.
    const classicCtx = path.join(tmp, `classic-docker_dockerfile_${minor.replace(/\W/g, "_")}`);
    const gone = await cli(["build", "-t", "syntax-classic:1", classicCtx], classic);
    assert.notEqual(gone.code, 0, gone.stdout);
    assert.match(gone.stderr + gone.stdout, new RegExp(`docker/dockerfile:${minor.replace(".", "\\.")}`));
    const goneBuildx = await cli(["build", "--progress=plain", ctx]);
    assert.notEqual(goneBuildx.code, 0, goneBuildx.stderr);
    // `:1` is still there and still works.
    await ok(["build", "-q", await context("still-1", dockerfile("docker/dockerfile:1", "still"))]);

    await daemon.stop();
    daemon = startDaemon(dataRoot, socket);
    await daemon.waitFor(/ready in/);
    assert.match(daemon.output(), new RegExp(`as docker/dockerfile:${minor.replace(".", "\\.")}\\n`));
    assert.deepEqual(await frontendTags(), ["1", minor, version].sort());
    const back = await ok(["build", "--progress=plain", ctx]);
    assert.match(back.stderr, /made by restored/);
    // A start with nothing missing loads nothing.
    await daemon.stop();
    daemon = startDaemon(dataRoot, socket);
    await daemon.waitFor(/ready in/);
    assert.doesNotMatch(daemon.output(), /loaded dockerfile frontend/);
  });
});
