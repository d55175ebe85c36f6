import assert from "node:assert/strict";
import { execFile, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readdir, readFile, readlink, rm, stat, symlink, writeFile } from "node:fs/promises";
import http from "node:http";
import http2 from "node:http2";
import type { Socket } from "node:net";
import os from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { promisify } from "node:util";
import { gunzipSync } from "node:zlib";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import tar from "tar-stream";
import {
  createControlClient,
  ListWorkersRequestSchema,
  ListWorkersResponseSchema,
} from "../src/buildkit/index.js";
import { parseDialAddress } from "../src/transport/index.js";
import { seedBusybox } from "./support/busybox-rootfs.js";
import { type DaemonProc, startDaemon } from "./support/daemon.js";
import { NETWORK_PROBE_RUN } from "./support/network-probe.js";
import { poll } from "./support/poll.js";
import { findDockerd, startStockDockerd } from "./support/stock-dockerd.js";
import { tool } from "./support/tools.js";

const run = promisify(execFile);

interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Every entry of a tar (test images are ~1 MB): name → content. */
async function untar(data: Buffer): Promise<Map<string, Buffer>> {
  const files = new Map<string, Buffer>();
  const extract = tar.extract();
  const done = new Promise<void>((resolve, reject) => {
    extract.on("entry", (h, stream, next) => {
      const chunks: Buffer[] = [];
      stream.on("data", (c: unknown) => chunks.push(c as Buffer));
      stream.on("end", () => {
        files.set(h.name.replace(/^\.?\//, ""), Buffer.concat(chunks));
        next();
      });
    });
    extract.on("finish", resolve);
    extract.on("error", reject);
  });
  extract.end(data);
  await done;
  return files;
}

/** POST /grpc by hand: the status line of a refused upgrade, or the hijacked socket. */
function openGrpc(
  socket: string,
  headers: Record<string, string>,
): Promise<{ status: number; body: string; sock?: Socket }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ socketPath: socket, method: "POST", path: "/grpc", headers });
    req.on("upgrade", (res, sock, head) => {
      if (head.length) sock.unshift(head);
      resolve({ status: res.statusCode ?? 0, body: "", sock: sock as Socket });
    });
    req.on("response", (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (c: string) => {
        body += c;
      });
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on("error", reject);
    req.end();
  });
}

/** One unary call with a request message; the response message (if any) and grpc-status. */
function grpcUnary(
  h2: http2.ClientHttp2Session,
  method: string,
  msg: Uint8Array,
): Promise<{ status: string; message?: Buffer }> {
  return new Promise((resolve, reject) => {
    const call = h2.request({
      ":method": "POST",
      ":path": method,
      "content-type": "application/grpc",
      te: "trailers",
    });
    let status = "";
    const chunks: Buffer[] = [];
    call.on("response", (h) => {
      if (h["grpc-status"] !== undefined) status = String(h["grpc-status"]);
    });
    call.on("trailers", (t) => {
      status = String(t["grpc-status"]);
    });
    call.on("data", (c: Buffer) => chunks.push(c));
    call.on("end", () => {
      const body = Buffer.concat(chunks);
      resolve({ status, ...(body.length >= 5 ? { message: body.subarray(5) } : {}) });
    });
    call.on("error", reject);
    const frame = Buffer.alloc(5 + msg.length);
    frame.writeUInt32BE(msg.length, 1);
    frame.set(msg, 5);
    call.end(frame);
  });
}

describe("docker buildx (docker driver) against Arca: /grpc and /session", () => {
  let tmp: string;
  let dataRoot: string;
  let socket: string;
  let daemon: DaemonProc;
  let env: NodeJS.ProcessEnv;

  const cli = async (args: string[], extraEnv: Record<string, string> = {}): Promise<CliResult> => {
    try {
      const r = await run("docker", args, { env: { ...env, ...extraEnv }, maxBuffer: 64 << 20 });
      return { code: 0, stdout: r.stdout, stderr: r.stderr };
    } catch (err) {
      const e = err as { code?: number; stdout?: string; stderr?: string };
      return {
        code: typeof e.code === "number" ? e.code : -1,
        stdout: e.stdout ?? "",
        stderr: e.stderr ?? "",
      };
    }
  };
  const ok = async (args: string[], extraEnv: Record<string, string> = {}): Promise<CliResult> => {
    const r = await cli(args, extraEnv);
    assert.equal(r.code, 0, `docker ${args.join(" ")}\n${r.stderr}${r.stdout}`);
    return r;
  };
  /** A build context dir with the given files. */
  const context = async (name: string, files: Record<string, string>): Promise<string> => {
    const dir = path.join(tmp, name);
    for (const [f, content] of Object.entries(files)) {
      await mkdir(path.dirname(path.join(dir, f)), { recursive: true });
      await writeFile(path.join(dir, f), content);
    }
    return dir;
  };
  const sandboxProcesses = async (): Promise<string> =>
    (await ok(["exec", "arca-buildkit", "ps", "-o", "args"])).stdout;

  before(async () => {
    tmp = await mkdtemp(path.join(os.tmpdir(), "arca-api-buildx-"));
    dataRoot = path.join(tmp, "data");
    socket = path.join(tmp, "arca.sock");
    // The plugin comes from the tools dir, not ~/.docker: a config dir of our own.
    const dockerConfig = path.join(tmp, "docker-config");
    await mkdir(path.join(dockerConfig, "cli-plugins"), { recursive: true });
    await symlink(tool("docker-buildx"), path.join(dockerConfig, "cli-plugins", "docker-buildx"));
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
    const v = await ok(["buildx", "version"]);
    assert.match(v.stdout, /github\.com\/docker\/buildx v0\.38\.2/);
  });

  after(async () => {
    if (process.env.ARCA_TEST_DEBUG) console.log(daemon?.output());
    await daemon?.stop();
    await rm(tmp, { recursive: true, force: true });
  });

  test("buildx sees the docker driver with the containerd-store features", async () => {
    const info = JSON.parse((await ok(["info", "--format", "{{json .DriverStatus}}"])).stdout);
    assert.deepEqual(info[0], ["driver-type", "io.containerd.snapshotter.v1"]);
    const inspect = await ok(["buildx", "inspect"]);
    assert.match(inspect.stdout, /Driver:\s+docker/);
    assert.match(inspect.stdout, /Status:\s+running/);
    assert.match(inspect.stdout, /BuildKit version:\s+v0\.32\.2/);
    assert.match(inspect.stdout, /org\.mobyproject\.buildkit\.worker\.snapshotter:\s+overlayfs/);
  });

  test("buildx build --load and plain docker build land in docker images; save has files and config", async () => {
    const ctx = await context("basic", {
      Dockerfile: [
        "FROM busybox:local",
        "ENV GREETING=hi",
        'RUN echo "run output: $GREETING" && echo built > /built.txt',
        "COPY a.txt /a.txt",
        'CMD ["cat", "/a.txt"]',
        "",
      ].join("\n"),
      "a.txt": "from the context\n",
    });
    const iid = path.join(tmp, "iid1");
    const b1 = await ok([
      "buildx",
      "build",
      "--progress=plain",
      "-t",
      "app:1",
      "--load",
      "--iidfile",
      iid,
      ctx,
    ]);
    assert.match(b1.stderr, /#\d+ \[2\/3\] RUN echo "run output: hi" && echo built > \/built\.txt\n/);
    assert.match(b1.stderr, /#\d+ \d+\.\d+ run output: hi/);
    assert.match(b1.stderr, /#\d+ \[3\/3\] COPY a\.txt \/a\.txt/);
    // The push into the store reads as dockerd's local load, under the image's own name.
    assert.match(b1.stderr, /#\d+ naming to docker\.io\/library\/app:1 /);
    // A local load reads as dockerd's, not like a push to a registry.
    assert.doesNotMatch(b1.stderr, /pushing/);
    assert.doesNotMatch(b1.stderr, /127\.0\.0\.1:5000/);
    const b2 = await ok(["build", "-t", "app:2", "--progress=plain", ctx]);
    assert.match(b2.stderr, /CACHED/, "same steps come from BuildKit's cache");

    const images = await ok(["images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}"]);
    assert.match(images.stdout, /^app:1 [0-9a-f]{12}$/m);
    assert.match(images.stdout, /^app:2 [0-9a-f]{12}$/m);
    const id = (await ok(["inspect", "-f", "{{.Id}}", "app:1"])).stdout.trim();
    assert.equal((await readFile(iid, "utf8")).trim(), id, "--iidfile holds the ID docker inspect shows");

    const saved = path.join(tmp, "app1.tar");
    await ok(["save", "-o", saved, "app:1"]);
    const files = await untar(await readFile(saved));
    const manifest = JSON.parse(String(files.get("manifest.json")));
    assert.deepEqual(manifest[0].RepoTags, ["app:1"]);
    const config = JSON.parse(String(files.get(manifest[0].Config)));
    assert.deepEqual(config.config.Cmd, ["cat", "/a.txt"]);
    assert.ok(config.config.Env.includes("GREETING=hi"));
    const layers = new Map<string, string>();
    for (const l of manifest[0].Layers as string[]) {
      const blob = files.get(l) as Buffer;
      // BuildKit pushed gzip layers; save hands them on as stored.
      const layer = blob[0] === 0x1f && blob[1] === 0x8b ? gunzipSync(blob) : blob;
      for (const [name, content] of await untar(layer)) layers.set(name, content.toString());
    }
    assert.equal(layers.get("a.txt"), "from the context\n");
    assert.equal(layers.get("built.txt"), "built\n");
    assert.ok(layers.has("bin/busybox"), "base layer included");

    // A stock dockerd loads the saved image and sees the same image and files.
    const dockerd = await findDockerd();
    assert.ok(dockerd, "dockerd not found: apt-get install -y docker.io");
    const stock = startStockDockerd(dockerd, path.join(tmp, "stock-dockerd"));
    try {
      await stock.ready;
      const stockEnv = { DOCKER_HOST: `unix://${stock.socket}` };
      await ok(["load", "-i", saved], stockEnv);
      const loaded = await ok(["image", "inspect", "-f", "{{.Id}} {{json .Config.Cmd}}", "app:1"], stockEnv);
      assert.equal(loaded.stdout.trim(), `${id} ["cat","/a.txt"]`);
      const files = await ok(["create", "--name", "probe", "app:1"], stockEnv);
      assert.match(files.stdout, /^[0-9a-f]{64}$/m);
      const exported = path.join(tmp, "probe.tar");
      await ok(["export", "-o", exported, "probe"], stockEnv);
      const tree = await untar(await readFile(exported));
      assert.equal(String(tree.get("a.txt")), "from the context\n");
      assert.equal(String(tree.get("built.txt")), "built\n");
    } finally {
      await stock.stop();
    }
  });

  test("default progress on a terminal renders the live TTY view", async () => {
    const ctx = await context("tty", { Dockerfile: "FROM busybox:local\nRUN echo tty > /tty\n" });
    // script(1) gives the CLI a pseudo-terminal, so buildx picks its TTY display itself.
    const tty = await run("script", ["-qec", `docker buildx build --no-cache -t tty:1 ${ctx}`, "/dev/null"], {
      env,
      maxBuffer: 16 << 20,
    });
    assert.match(tty.stdout, /\[\+\] Building [\d.]+s \(\d+\/\d+\)/);
    assert.match(tty.stdout, /FINISHED/);
    assert.match(tty.stdout, /RUN echo tty > \/tty/);
    await ok(["inspect", "tty:1"]);
  });

  test("BuildKit-only Dockerfile features: heredocs, cache/secret mounts, COPY --link/--chmod, TARGETPLATFORM, named contexts", async () => {
    const ctx = await context("features", {
      Dockerfile: [
        "FROM busybox:local",
        "ARG TARGETPLATFORM",
        'RUN echo "platform=$TARGETPLATFORM" > /platform',
        "RUN <<EOT",
        "echo heredoc-line-1 > /heredoc",
        "echo heredoc-line-2 >> /heredoc",
        "EOT",
        "COPY <<EOT /inline.txt",
        "inline heredoc file",
        "EOT",
        'RUN --mount=type=secret,id=token test "$(cat /run/secrets/token)" = s3cr3t && echo secret-ok > /secret-ok',
        "COPY --link a.txt /linked/a.txt",
        "COPY --chmod=0751 tool.sh /tool.sh",
        "COPY --from=extra extra.txt /extra.txt",
        "ARG BUST",
        'RUN --mount=type=cache,target=/cache,id=arca-buildx-test echo "$BUST" >> /cache/log && cp /cache/log /cache-log',
        "",
      ].join("\n"),
      "a.txt": "linked\n",
      "tool.sh": "#!/bin/sh\necho tool\n",
    });
    const extra = await context("extra", { "extra.txt": "from a named context\n" });
    const secret = path.join(tmp, "token.txt");
    await writeFile(secret, "s3cr3t");
    const out1 = path.join(tmp, "features-out-1");
    const out2 = path.join(tmp, "features-out-2");
    const common = ["--secret", `id=token,src=${secret}`, "--build-context", `extra=${extra}`];
    await ok([
      "buildx",
      "build",
      ...common,
      "--build-arg",
      "BUST=one",
      "--output",
      `type=local,dest=${out1}`,
      ctx,
    ]);
    await ok(["buildx", "build", ...common, "--build-arg", "BUST=two", "-o", `type=local,dest=${out2}`, ctx]);

    const read = (f: string) => readFile(path.join(out1, f), "utf8");
    assert.equal(await read("platform"), `platform=linux/${os.arch() === "x64" ? "amd64" : os.arch()}\n`);
    assert.equal(await read("heredoc"), "heredoc-line-1\nheredoc-line-2\n");
    assert.equal(await read("inline.txt"), "inline heredoc file\n");
    assert.equal(await read("secret-ok"), "secret-ok\n");
    assert.ok(!existsSync(path.join(out1, "run/secrets/token")), "secret not left in the image");
    assert.equal(await read("linked/a.txt"), "linked\n");
    assert.equal((await stat(path.join(out1, "tool.sh"))).mode & 0o777, 0o751);
    assert.equal(await read("extra.txt"), "from a named context\n");
    assert.equal(await read("cache-log"), "one\n");
    assert.equal(await readFile(path.join(out2, "cache-log"), "utf8"), "one\ntwo\n", "cache mount persisted");
  });

  test("--output type=oci and --cache-to/--cache-from type=local", async () => {
    const ctx = await context("oci", {
      Dockerfile: "FROM busybox:local\nARG N\nRUN echo cached-step-$N > /step\n",
    });
    const oci = path.join(tmp, "out.oci.tar");
    const cacheDir = path.join(tmp, "cache");
    await ok([
      "buildx",
      "build",
      "--build-arg",
      "N=1",
      "--output",
      `type=oci,dest=${oci}`,
      "--cache-to",
      `type=local,dest=${cacheDir},mode=max`,
      ctx,
    ]);
    const files = await untar(await readFile(oci));
    assert.ok(files.has("oci-layout") && files.has("index.json"), [...files.keys()].join(" "));
    assert.ok(existsSync(path.join(cacheDir, "index.json")), "local cache exported");

    // With BuildKit's own cache gone, the step comes back from the exported cache.
    await ok(["buildx", "prune", "-af"]);
    const again = await ok([
      "buildx",
      "build",
      "--progress=plain",
      "--build-arg",
      "N=1",
      "--cache-from",
      `type=local,src=${cacheDir}`,
      "-o",
      `type=local,dest=${path.join(tmp, "oci-again")}`,
      ctx,
    ]);
    assert.match(again.stderr, /importing cache manifest from local/);
    assert.match(
      again.stderr,
      /#(\d+) \[2\/2\] RUN echo cached-step-1 > \/step\n(?:#\1 [^\n]*\n)*#\1 CACHED\n/,
    );
  });

  test("docker buildx du, buildx prune -f and builder prune -f go through Control.DiskUsage/Prune", async () => {
    const ctx = await context("du", { Dockerfile: "FROM busybox:local\nRUN echo du > /du\n" });
    await ok(["buildx", "build", "-o", `type=local,dest=${path.join(tmp, "du-out")}`, ctx]);
    // A classic build with a big file: its upload is kept for reuse, and counts as build cache.
    const classicCtx = await context("du-kept", {
      Dockerfile: "FROM busybox:local\nCOPY big /big\n",
      big: "x".repeat(1 << 20),
    });
    await ok(["build", "-q", "-t", "du-kept:1", classicCtx], { DOCKER_BUILDKIT: "0" });
    // `buildx du --verbose` prints one "Field: value" block per record.
    const keptRecord = async () =>
      (await ok(["buildx", "du", "--verbose"])).stdout
        .split(/\n\s*\n/)
        .map((block) =>
          Object.fromEntries(block.split("\n").map((l) => l.match(/^([^:]+):\s+(.*)$/)?.slice(1) ?? [])),
        )
        .find((r) => r.Description === "kept upload of a classic build context: du-kept:1 (Dockerfile)");
    const kept = await poll(keptRecord, 10_000, "the kept upload in buildx du --verbose");
    assert.equal(kept.Type, "source.local");
    assert.equal(kept.Size, "1.049MB");
    assert.equal(kept.Reclaimable, "true");
    const du = await ok(["buildx", "du"]);
    assert.match(du.stdout, /^ID\s+RECLAIMABLE\s+SIZE\s+LAST ACCESSED/m);
    assert.match(du.stdout, /^Total:/m);
    const prune = await ok(["buildx", "prune", "-f"]);
    assert.match(prune.stdout, /Total:/);
    assert.match(
      prune.stdout,
      new RegExp(`^${kept.ID}\\s`, "m"),
      "buildx prune lists the kept upload it freed",
    );
    assert.equal(await keptRecord(), undefined);
    const builderPrune = await ok(["builder", "prune", "-f"]);
    assert.match(builderPrune.stdout, /Total:/);
  });

  test("a Solve the daemon refuses (loopback and remote pushes mixed, an invalid name) is answered with its error; the daemon lives on", async () => {
    const ctx = await context("refused", { Dockerfile: "FROM busybox:local\nRUN echo refused > /r\n" });
    const mixed = await cli([
      "buildx",
      "build",
      "--output",
      'type=image,"name=localhost:5999/a:1,example.org/b:1",push=true',
      ctx,
    ]);
    assert.notEqual(mixed.code, 0);
    assert.match(mixed.stderr, /cannot share a build with pushes elsewhere/);
    const badName = await cli(["buildx", "build", "--output", "type=image,name=UPPER/Case:1", ctx]);
    assert.notEqual(badName.code, 0);
    assert.match(badName.stderr, /invalid image name/);
    // Still answering, and still building.
    await ok(["version"]);
    await ok(["buildx", "build", "-o", `type=local,dest=${path.join(tmp, "refused-out")}`, ctx]);
  });

  test("POST /grpc: dockerd's upgrade errors; every method reaches buildkitd, unknown ones UNIMPLEMENTED", async () => {
    const none = await openGrpc(socket, {});
    assert.equal(none.status, 500);
    assert.match(none.body, /no upgrade proto in request/);
    const ws = await openGrpc(socket, { Connection: "Upgrade", Upgrade: "websocket" });
    assert.equal(ws.status, 500);
    assert.match(ws.body, /protocol websocket not supported/);

    const up = await openGrpc(socket, { Connection: "Upgrade", Upgrade: "h2c" });
    assert.equal(up.status, 101);
    const h2 = http2.connect("http://arca", { createConnection: () => up.sock as Socket });
    try {
      const empty = new Uint8Array();
      const info = await grpcUnary(h2, "/moby.buildkit.v1.Control/Info", empty);
      assert.equal(info.status, "0");
      const unknown = await grpcUnary(h2, "/moby.buildkit.v1.Control/NoSuchMethod", empty);
      assert.equal(unknown.status, "12");
      const service = await grpcUnary(h2, "/no.such.Service/Call", empty);
      assert.equal(service.status, "12");
      // ListWorkers is answered from the pool's last health check: the same workers buildkitd
      // lists on its channel socket. A filtered request still goes to buildkitd, which applies it.
      const direct = createControlClient(
        parseDialAddress(`unix://${path.join(dataRoot, "run", "sandbox", "buildkitd.sock")}`),
      );
      try {
        const truth = await direct.control.listWorkers({});
        const all = await grpcUnary(h2, "/moby.buildkit.v1.Control/ListWorkers", new Uint8Array());
        assert.equal(all.status, "0");
        const listed = fromBinary(ListWorkersResponseSchema, all.message ?? new Uint8Array());
        assert.deepEqual(
          listed.record.map((w) => w.ID),
          truth.record.map((w) => w.ID),
        );
        assert.ok(listed.record.length > 0);
        const filtered = await grpcUnary(
          h2,
          "/moby.buildkit.v1.Control/ListWorkers",
          toBinary(
            ListWorkersRequestSchema,
            create(ListWorkersRequestSchema, { filter: ["id==no-such-worker"] }),
          ),
        );
        assert.equal(filtered.status, "0");
        assert.equal(
          fromBinary(ListWorkersResponseSchema, filtered.message ?? new Uint8Array()).record.length,
          0,
        );
      } finally {
        direct.close();
      }
    } finally {
      h2.destroy();
    }
  });

  test("daemon policy: RUN gets the step network (never the sandbox's loopback); network.host is refused", async () => {
    const ctx = await context("net", { Dockerfile: `FROM busybox:local\n${NETWORK_PROBE_RUN}\n` });
    const r = await ok(["buildx", "build", "--progress=plain", "--no-cache", ctx]);
    assert.match(r.stderr, /#\d+ [\d.]+ lo\n#\d+ [\d.]+ eth\d+\n#\d+ [\d.]+ isolated\n/);
    const none = await ok(["buildx", "build", "--progress=plain", "--no-cache", "--network=none", ctx]);
    assert.match(none.stderr, /#\d+ [\d.]+ lo\n#\d+ [\d.]+ isolated\n/);
    const host = await cli([
      "buildx",
      "build",
      "--network=host",
      "--allow",
      "network.host",
      "--no-cache",
      ctx,
    ]);
    assert.notEqual(host.code, 0);
    assert.match(host.stderr, /network\.host is not allowed/);
  });

  test("a client killed mid-build leaves no running step and no connection; the next build works", async () => {
    const ctx = await context("kill", {
      Dockerfile: "FROM busybox:local\nRUN echo started-long-step && sleep 4711\n",
    });
    const openSockets = async () => {
      const fds = await readdir(`/proc/${daemon.proc.pid}/fd`);
      let n = 0;
      for (const fd of fds) {
        const target = await readlink(`/proc/${daemon.proc.pid}/fd/${fd}`).catch(() => "");
        if (target.startsWith("socket:")) n++;
      }
      return n;
    };
    await sandboxProcesses(); // (its first exec may leave a lasting socket of its own)
    const baseline = await openSockets();
    const child = spawn("docker", ["buildx", "build", "--progress=plain", "--no-cache", ctx], {
      env,
      detached: true,
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    child.stderr.on("data", (d: Buffer) => {
      out += d.toString();
    });
    await poll(async () => (/started-long-step\n/.test(out) ? true : undefined), 60_000, "the RUN to start");
    assert.match(await sandboxProcesses(), /sleep 4711/);
    // The docker CLI and its buildx plugin process, as a terminal's Ctrl-\ would.
    process.kill(-(child.pid as number), "SIGKILL");
    await poll(
      async () => (/sleep 4711/.test(await sandboxProcesses()) ? undefined : true),
      30_000,
      "the RUN process to go away",
    );
    // Every /grpc and /session connection of the killed client, and their upstream ones, are gone.
    await poll(
      async () => ((await openSockets()) <= baseline ? true : undefined),
      // One of them lingers for ~25 s (see the report); the rest close at once.
      45_000,
      "connections to close",
    );
    const after = await context("after-kill", { Dockerfile: "FROM busybox:local\nRUN echo still-fine\n" });
    const r = await ok([
      "buildx",
      "build",
      "--progress=plain",
      "--no-cache",
      "-t",
      "after:1",
      "--load",
      after,
    ]);
    assert.match(r.stderr, /still-fine/);
  });

  test("Dockerfile from stdin; a failing RUN fails the CLI with its output and exit code", async () => {
    const ctx = await context("stdin", { "f.txt": "via stdin Dockerfile\n" });
    const child = spawn(
      "docker",
      ["buildx", "build", "--progress=plain", "-f", "-", "-t", "stdin:1", "--load", ctx],
      {
        env,
        stdio: ["pipe", "pipe", "pipe"],
      },
    );
    let err = "";
    child.stderr.on("data", (d: Buffer) => {
      err += d.toString();
    });
    child.stdin.end("FROM busybox:local\nCOPY f.txt /f.txt\nRUN cat /f.txt\n");
    const code = await new Promise<number | null>((resolve) => child.on("close", resolve));
    assert.equal(code, 0, err);
    assert.match(err, /via stdin Dockerfile/);
    await ok(["inspect", "stdin:1"]);

    const bad = await context("fail", {
      Dockerfile: "FROM busybox:local\nRUN echo about-to-fail && exit 3\n",
    });
    const r = await cli(["buildx", "build", "--progress=plain", bad]);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /about-to-fail/);
    assert.match(r.stderr, /did not complete successfully: exit code: 3/);
  });
});
