import assert from "node:assert/strict";
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { mkdir, mkdtemp, readdir, rm, stat, utimes, writeFile } from "node:fs/promises";
import http from "node:http";
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
import { poll } from "./support/poll.js";

const run = promisify(execFile);

interface Reply {
  status: number;
  body: string;
}

/** One request on the daemon's socket; body is a Buffer or a stream. */
function request(socket: string, method: string, urlPath: string, body?: Buffer | Readable): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      { socketPath: socket, method, path: urlPath, headers: { "Content-Type": "application/x-tar" } },
      (res) => {
        let text = "";
        res.setEncoding("utf8");
        res.on("data", (c: string) => {
          text += c;
        });
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body: text }));
        res.on("error", reject);
      },
    );
    req.on("error", reject);
    if (body instanceof Readable) body.pipe(req);
    else req.end(body);
  });
}

/** A tar (in memory: test contexts are tiny) of name → content, or {symlink}/{link} entries. */
async function tarOf(
  entries: [string, string | { symlink: string } | { link: string } | { dir: true }][],
): Promise<Buffer> {
  const pack = tar.pack();
  for (const [name, v] of entries) {
    if (typeof v === "string") pack.entry({ name, mode: 0o644 }, v);
    else if ("symlink" in v) pack.entry({ name, type: "symlink", linkname: v.symlink });
    else if ("link" in v) pack.entry({ name, type: "link", linkname: v.link });
    else pack.entry({ name, type: "directory", mode: 0o755 });
  }
  pack.finalize();
  const chunks: Buffer[] = [];
  for await (const c of pack) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

/** A ustar header declaring `size` bytes (base-256 size field, as GNU tar writes sizes over 8 GiB). */
function bigFileHeader(name: string, size: bigint): Buffer {
  const h = Buffer.alloc(512);
  h.write(name, 0, "utf8");
  h.write("0000644\0", 100);
  h.write("0000000\0", 108);
  h.write("0000000\0", 116);
  h[124] = 0x80;
  let s = size;
  for (let i = 135; i > 124; i--) {
    h[i] = Number(s & 0xffn);
    s >>= 8n;
  }
  h.write("00000000000\0", 136);
  h.write("0", 156);
  h.write("ustar\x0000", 257, "latin1");
  h.fill(" ", 148, 156);
  let sum = 0;
  for (const b of h) sum += b;
  h.write(`${sum.toString(8).padStart(6, "0")}\0 `, 148, "latin1");
  return h;
}

async function processMatching(marker: string): Promise<boolean> {
  const r = await run("ps", ["-eo", "args"]);
  return r.stdout.split("\n").some((l) => l.includes(marker) && !l.includes("curl"));
}

describe("POST /build, /build/prune, /build/cancel, /system/df against a real daemon", () => {
  let tmp: string;
  let dataRoot: string;
  let socket: string;
  let daemon: DaemonProc;
  let docker: Docker;
  let env: NodeJS.ProcessEnv;

  const ping = async () => {
    const r = await request(socket, "GET", "/_ping");
    assert.equal(r.status, 200, "daemon keeps serving");
  };
  const cli = async (args: string[], extraEnv: Record<string, string> = {}) => {
    try {
      const r = await run("docker", args, { env: { ...env, ...extraEnv }, maxBuffer: 16 << 20 });
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

  before(async () => {
    tmp = await mkdtemp(path.join(os.tmpdir(), "arca-api-build-"));
    dataRoot = path.join(tmp, "data");
    socket = path.join(tmp, "arca.sock");
    // The base image goes into the store before the daemon opens it (SQLite is shared anyway).
    await seedBusybox(dataRoot, tmp);
    daemon = startDaemon(dataRoot, socket);
    await daemon.waitFor(/ready in/);
    docker = new Docker({ socketPath: socket });
    env = { ...process.env, DOCKER_HOST: `unix://${socket}`, DOCKER_CONFIG: path.join(tmp, "docker-config") };
  });

  after(async () => {
    if (process.env.ARCA_TEST_DEBUG) console.log(daemon?.output());
    await daemon?.stop();
    await rm(tmp, { recursive: true, force: true });
  });

  test("legacy docker build: -t, --build-arg, --target, -f outside the context; failing RUN exit code", async () => {
    const ctx = path.join(tmp, "ctx");
    await mkdir(path.join(ctx, "src"), { recursive: true });
    await writeFile(path.join(ctx, "src", "hello.txt"), "hello from the context\n");
    await writeFile(path.join(ctx, "src", "skip.log"), "ignored\n");
    await writeFile(path.join(ctx, ".dockerignore"), "**/*.log\n");
    const dockerfile = path.join(tmp, "elsewhere.Dockerfile");
    await writeFile(
      dockerfile,
      [
        "FROM busybox:local AS base",
        "ARG A=unset",
        'RUN echo "build arg is $A"',
        "COPY src/ /src/",
        "RUN test ! -e /src/skip.log",
        "FROM base AS t",
        "RUN cat /src/hello.txt",
        "FROM base AS broken",
        "RUN echo about to fail && exit 7",
        "",
      ].join("\n"),
    );
    const r = await cli(
      [
        ...["build", "-t", "x:1", "-t", "localhost:5000/x:2", "--build-arg", "A=b", "--target", "t"],
        ...["-f", dockerfile, ctx],
      ],
      {
        DOCKER_BUILDKIT: "0",
      },
    );
    assert.equal(r.code, 0, r.stderr + r.stdout);
    assert.match(r.stdout, /Step 1\/\d+ : FROM busybox:local AS base\n/);
    assert.match(r.stdout, /build arg is b/);
    assert.match(r.stdout, /hello from the context/);
    assert.match(r.stdout, / ---> Running in [0-9a-f]{12}\n/);
    assert.match(r.stdout, /Successfully built [0-9a-f]{12}\n/);
    assert.match(r.stdout, /Successfully tagged x:1\n/);
    const images = await cli(["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    assert.match(images.stdout, /^x:1$/m);
    // A registry with a port in the name lands in the store too.
    assert.match(images.stdout, /^localhost:5000\/x:2$/m);
    assert.match(r.stdout, /Successfully tagged localhost:5000\/x:2\n/);

    // Same build again: every step comes from the cache.
    const again = await cli(
      ["build", "-t", "x:1", "--build-arg", "A=b", "--target", "t", "-f", dockerfile, ctx],
      {
        DOCKER_BUILDKIT: "0",
      },
    );
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stdout, / ---> Using cache\n/);

    const bad = await cli(["build", "--target", "broken", "-f", dockerfile, ctx], { DOCKER_BUILDKIT: "0" });
    assert.equal(bad.code, 7, bad.stderr + bad.stdout);
    assert.match(bad.stdout, /about to fail/);
    assert.match(
      bad.stderr,
      /The command '\/bin\/sh -c echo about to fail && exit 7' returned a non-zero code: 7/,
    );
    await ping();
  });

  test("dockerode buildImage with a tar stream: version 1 and version 2 progress", async () => {
    const context = await tarOf([
      ["Dockerfile", "FROM busybox:local\nRUN echo dockerode-v$V > /v.txt\nCMD cat /v.txt\n"],
    ]);
    for (const version of ["1", "2"] as const) {
      // dockerode's buildImage opens a /session for version 2 (not served here): for v2, the same
      // request through dockerode's modem, with the context as the body.
      const stream =
        version === "1"
          ? await docker.buildImage(Readable.from([context]), { t: "dode:v1", buildargs: { V: "1" } })
          : await new Promise<NodeJS.ReadableStream>((resolve, reject) =>
              docker.modem.dial(
                {
                  path: "/build?",
                  method: "POST",
                  file: Readable.from([context]),
                  options: { t: "dode:v2", buildargs: JSON.stringify({ V: "2" }), version: "2" },
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
      const errors = events.filter((e) => e.error);
      assert.deepEqual(errors, []);
      if (version === "1") {
        assert.ok(events.some((e) => typeof e.stream === "string" && e.stream.startsWith("Step 1/")));
        const aux = events.find((e) => e.aux && !e.id)?.aux as { ID: string };
        assert.match(aux.ID, /^sha256:[0-9a-f]{64}$/);
      } else {
        const traces = events.filter((e) => e.id === "moby.buildkit.trace");
        assert.ok(traces.length > 0);
        const names = traces.flatMap((t) =>
          fromBinary(StatusResponseSchema, Buffer.from(t.aux as string, "base64")).vertexes.map(
            (v) => v.name,
          ),
        );
        assert.ok(
          names.some((n) => n.includes("RUN echo dockerode-v")),
          names.join("\n"),
        );
        const id = events.find((e) => e.id === "moby.image.id")?.aux as { ID: string };
        assert.match(id.ID, /^sha256:[0-9a-f]{64}$/);
        const inspect = await docker.getImage("dode:v2").inspect();
        assert.equal(inspect.Id, id.ID);
      }
    }
    await ping();
  });

  test("compressed contexts (gzip, xz) and q=1", async () => {
    const context = await tarOf([["Dockerfile", "FROM busybox:local\nRUN echo quiet\n"]]);
    const { gzipSync } = await import("node:zlib");
    const gz = await request(socket, "POST", "/build?q=1&t=cz:gz", gzipSync(context));
    assert.equal(gz.status, 200);
    assert.match(gz.body, /^\{"stream":"sha256:[0-9a-f]{64}\\n"\}\r\n$/);
    const xz = spawn("xz", ["-c"], { stdio: ["pipe", "pipe", "inherit"] });
    xz.stdin.end(context);
    const r = await request(socket, "POST", "/build?t=cz:xz&version=2", xz.stdout);
    assert.equal(r.status, 200);
    assert.match(r.body, /"id":"moby.image.id"/);
  });

  test("bad input: dockerd's status and message; nothing written outside; daemon keeps serving", async () => {
    const ok = await tarOf([["Dockerfile", "FROM busybox:local\n"]]);
    const cases: [string, Buffer, number, RegExp][] = [
      ["/build?buildargs=%7Bnope", ok, 400, /^error reading build args: /],
      ["/build?labels=%5B1%5D", ok, 400, /^error reading labels: /],
      ["/build?outputs=nope", ok, 400, /^error reading outputs: /],
      ["/build?version=3", ok, 400, /^invalid version "3"$/],
      ["/build?platform=linux%2F%2F", ok, 400, /invalid component/],
      ["/build?platform=bogus", ok, 400, /unknown operating system or architecture/],
      [`/build?t=x%40sha256%3A${"a".repeat(64)}`, ok, 400, /build tag cannot contain a digest/],
      ["/build?t=UPPER", ok, 400, /invalid reference format/],
      ["/build?memory=abc", ok, 400, /^invalid memory "abc": strconv.ParseInt/],
      ["/build?shmsize=-1", ok, 400, /^SHM size can not be less than 0$/],
      ["/build?shmsize=99999999999999999999", ok, 400, /value out of range$/],
      [
        "/build?memory=67108864&cpuquota=50000",
        ok,
        400,
        /not supported by Arca: memory=67108864, cpuquota=50000/,
      ],
      ["/build?squash=1", ok, 400, /squash is only supported with experimental mode/],
      ["/build?remote=client-session", ok, 400, /client-session/],
      ["/build?remote=https%3A%2F%2Fexample.com%2Fctx.tar", ok, 400, /no network/],
      ["/build?networkmode=bridge", ok, 500, /network mode "bridge" not supported by buildkit/],
      [
        "/build",
        Buffer.from("this is not a tar archive at all, not even close".repeat(20)),
        400,
        /failed to read build context/,
      ],
      [
        "/build",
        (await tarOf([["Dockerfile", "#".repeat(4000)]])).subarray(0, 2000),
        400,
        /failed to read build context/,
      ],
    ];
    for (const [url, body, status, re] of cases) {
      const r = await request(socket, "POST", url, body);
      assert.equal(r.status, status, `${url}: ${r.body}`);
      assert.match(JSON.parse(r.body).message, re, url);
      await ping();
    }

    // Path escapes: `..`, absolute paths, writing through an archive symlink, hardlinks out.
    const outside = path.join(tmp, "outside");
    await mkdir(outside, { recursive: true });
    const escapes: [string, Buffer][] = [
      [
        "..",
        await tarOf([
          ["Dockerfile", "FROM busybox:local\n"],
          ["../escaped.txt", "x"],
        ]),
      ],
      ["absolute", await tarOf([[path.join(outside, "abs.txt"), "x"]])],
      [
        "symlink",
        await tarOf([
          ["link", { symlink: outside }],
          ["link/through.txt", "x"],
        ]),
      ],
      ["hardlink", await tarOf([["hl", { link: "../../etc/passwd" }]])],
    ];
    for (const [what, body] of escapes) {
      const r = await request(socket, "POST", "/build", body);
      assert.equal(r.status, 400, `${what}: ${r.body}`);
      assert.match(JSON.parse(r.body).message, /invalid build context/, what);
      await ping();
    }
    assert.deepEqual(await readdir(outside), []);
    await assert.rejects(stat(path.join(dataRoot, "escaped.txt")));

    // A symlink pointing out of the context is legal as such (it stays a symlink).
    const withLink = await tarOf([
      ["Dockerfile", "FROM busybox:local\nCOPY . /ctx/\nRUN test -L /ctx/out\n"],
      ["out", { symlink: "/etc" }],
    ]);
    const linked = await request(socket, "POST", "/build?version=2", withLink);
    assert.equal(linked.status, 200);
    assert.doesNotMatch(linked.body, /errorDetail/);

    // 10 GB declared, 1 KB sent: an error when the body ends, not a hang.
    const big = Buffer.concat([bigFileHeader("huge.bin", 10n << 30n), Buffer.alloc(1024, 1)]);
    const r = await request(socket, "POST", "/build", big);
    assert.equal(r.status, 400, r.body);
    assert.match(JSON.parse(r.body).message, /failed to read build context/);
    await ping();
    // Every build's temp dir is gone.
    assert.deepEqual(await readdir(path.join(dataRoot, "tmp")), []);
  });

  test("unchanged rebuilds are answered from memory; new bytes, a moved base tag or a prune rebuild", async () => {
    const ctx = path.join(tmp, "memo");
    await mkdir(ctx, { recursive: true });
    await writeFile(path.join(ctx, "f.txt"), "one\n");
    // The RUN's output differs every time it really runs, so the image ID tells a rebuild from a replay.
    await writeFile(path.join(ctx, "Dockerfile"), "FROM base:memo\nCOPY f.txt /f\nRUN date +%s%N > /stamp\n");
    const tagBase = async (from: string) => assert.equal((await cli(["tag", from, "base:memo"])).code, 0);
    const build = async (...flags: string[]) => {
      const r = await cli(["build", "-t", "memo:1", ...flags, ctx], { DOCKER_BUILDKIT: "0" });
      assert.equal(r.code, 0, r.stderr + r.stdout);
      const id = /Successfully built ([0-9a-f]{12})\n/.exec(r.stdout)?.[1];
      assert.ok(id, r.stdout);
      return { id, out: r.stdout };
    };
    await tagBase("busybox:local");
    const first = await build();
    const replay = await build();
    assert.equal(replay.id, first.id);
    // The replay reads like a fully cached build.
    assert.match(
      replay.out,
      /Step 1\/3 : FROM base:memo\n ---> [0-9a-f]{12}\nStep 2\/3 : COPY f.txt \/f\n ---> Using cache\n/,
    );
    assert.match(
      replay.out,
      /Step 3\/3 : RUN date \+%s%N > \/stamp\n ---> Using cache\n ---> [0-9a-f]{12}\n/,
    );
    assert.match(replay.out, /Successfully tagged memo:1\n/);
    // A tag moved meanwhile is put back on the answer.
    assert.equal((await cli(["tag", "busybox:local", "memo:1"])).code, 0);
    assert.equal((await build()).id, first.id);
    const inspect = await cli(["image", "inspect", "--format", "{{.Id}}", "memo:1"]);
    assert.match(inspect.stdout, new RegExp(`^sha256:${first.id}`));

    // Same size, same mtime, other bytes: a new build (the context's bytes are the key, not its metadata).
    const st = await stat(path.join(ctx, "f.txt"));
    await writeFile(path.join(ctx, "f.txt"), "two\n");
    await utimes(path.join(ctx, "f.txt"), st.atime, st.mtime);
    const changed = await build();
    assert.notEqual(changed.id, first.id);

    // The base tag now names another image: a new build.
    await tagBase("memo:1");
    const rebased = await build();
    assert.notEqual(rebased.id, changed.id);
    assert.doesNotMatch(rebased.out, /RUN date[^\n]*\n ---> Using cache/);

    // After a prune the steps really run again.
    assert.equal((await cli(["builder", "prune", "-af"], { DOCKER_BUILDKIT: "0" })).code, 0);
    const pruned = await build();
    assert.notEqual(pruned.id, rebased.id);
    assert.match(pruned.out, /RUN date[^\n]*\n ---> Running in/);

    // --no-cache never replays.
    assert.notEqual((await build("--no-cache")).id, pruned.id);
  });

  test("a rebuild writes only the big files that changed since the project's last upload; the image has the new bytes; a prune drops what was kept", async () => {
    const ctx = path.join(tmp, "reuse");
    await mkdir(ctx, { recursive: true });
    const big = randomBytes(4 << 20);
    await writeFile(path.join(ctx, "big.bin"), big);
    // RUN prints what the image holds: the build output shows whether the new bytes got in.
    await writeFile(
      path.join(ctx, "Dockerfile"),
      "FROM busybox:local\nCOPY big.bin /big.bin\nRUN sha256sum /big.bin\n",
    );
    const kept = path.join(dataRoot, "contexts");
    const keptFiles = async () =>
      Object.fromEntries(
        await Promise.all(
          (await readdir(kept).catch(() => [])).map(
            async (n) => [n, (await stat(path.join(kept, n))).size] as const,
          ),
        ),
      );
    const build = async () => {
      const r = await cli(["build", "--no-cache", "-t", "reuse:1", ctx], { DOCKER_BUILDKIT: "0" });
      assert.equal(r.code, 0, r.stderr + r.stdout);
      return r.stdout;
    };
    const sha = (b: Buffer) => createHash("sha256").update(b).digest("hex");
    const bigSpools = async () => Object.entries(await keptFiles()).filter(([, size]) => size >= big.length);

    assert.match(await build(), new RegExp(`${sha(big)}  /big.bin`));
    const first = await poll(
      async () => ((await bigSpools()).length === 1 ? await bigSpools() : undefined),
      10_000,
      "kept upload",
    );
    // Unchanged: the kept spool serves big.bin again, the new upload wrote only the Dockerfile.
    assert.match(await build(), new RegExp(`${sha(big)}  /big.bin`));
    await poll(
      async () => (Object.keys(await keptFiles()).length === 2 ? true : undefined),
      10_000,
      "the second upload kept",
    );
    assert.deepEqual(await bigSpools(), first, "no second copy of big.bin");
    // A failed upload of the project leaves the kept one in place.
    const cut = await request(
      socket,
      "POST",
      "/build?t=reuse:1",
      Buffer.concat([bigFileHeader("big.bin", BigInt(big.length)), big.subarray(0, 1 << 20)]),
    );
    assert.equal(cut.status, 400, cut.body);
    assert.deepEqual(await bigSpools(), first);

    assert.match(await build(), new RegExp(`${sha(big)}  /big.bin`));
    assert.deepEqual(await bigSpools(), first, "the kept upload served the build after the failed one");

    // One byte changed in the middle, same size and mtime: the image gets the new bytes.
    const st = await stat(path.join(ctx, "big.bin"));
    const changed = Buffer.from(big);
    changed[2 << 20] = (changed[2 << 20] ?? 0) ^ 0xff;
    await writeFile(path.join(ctx, "big.bin"), changed);
    await utimes(path.join(ctx, "big.bin"), st.atime, st.mtime);
    assert.match(await build(), new RegExp(`${sha(changed)}  /big.bin`));
    // The old bytes are no longer needed by the kept upload: only the new copy stays.
    await poll(
      async () => {
        const spools = await bigSpools();
        return spools.length === 1 && spools[0]?.[0] !== first[0]?.[0] ? true : undefined;
      },
      10_000,
      "only the changed upload kept",
    );

    // What is kept is build cache the user can see (docker system df) and gets back with a prune.
    const df = JSON.parse((await request(socket, "GET", "/v1.51/system/df?type=build-cache")).body) as {
      BuildCache: { ID: string; Type: string; Description: string; Size: number; InUse: boolean }[];
    };
    const keptRecords = df.BuildCache.filter((r) => r.Description.startsWith("kept upload"));
    assert.equal(keptRecords.length, 1, JSON.stringify(df.BuildCache));
    const [record] = keptRecords as [(typeof keptRecords)[number]];
    assert.equal(record.Type, "source.local");
    assert.match(record.Description, /: reuse:1 \(Dockerfile\)$/);
    assert.equal(record.InUse, false);
    const keptBytes = Object.values(await keptFiles()).reduce((n, size) => n + size, 0);
    assert.equal(record.Size, keptBytes);
    const dfVerbose = await cli(["system", "df", "-v"]);
    assert.equal(dfVerbose.code, 0, dfVerbose.stderr);
    assert.match(dfVerbose.stdout, new RegExp(`^${record.ID.slice(0, 12)}\\s+source\\.local\\s`, "m"));

    const prune = await cli(["builder", "prune", "-af"], { DOCKER_BUILDKIT: "0" });
    assert.equal(prune.code, 0, prune.stderr);
    assert.match(prune.stdout, new RegExp(`^${record.ID}$`, "m"), "the prune lists what it freed");
    await poll(
      async () => (Object.keys(await keptFiles()).length === 0 ? true : undefined),
      10_000,
      "prune drops it",
    );
    const after = JSON.parse((await request(socket, "GET", "/system/df?type=build-cache")).body) as {
      BuildCache: { Description: string }[];
    };
    assert.deepEqual(
      after.BuildCache.filter((r) => r.Description.startsWith("kept upload")),
      [],
    );
    // And the project starts over (the next tests expect build cache).
    assert.match(await build(), new RegExp(`${sha(changed)}  /big.bin`));
  });

  test("system df, builder prune (legacy), cancel", async () => {
    const df = await cli(["system", "df"]);
    assert.equal(df.code, 0, df.stderr);
    assert.match(df.stdout, /^Images\s/m);
    assert.match(df.stdout, /^Build Cache\s/m);
    const raw = JSON.parse((await request(socket, "GET", "/system/df?type=build-cache")).body);
    assert.ok(Array.isArray(raw.BuildCache) && raw.BuildCache.length > 0);
    assert.equal(raw.Images, null);

    const bad = await request(socket, "POST", "/build/prune?keep-storage=lots");
    assert.equal(bad.status, 400);
    assert.match(JSON.parse(bad.body).message, /^keep-storage is in bytes and expects an integer, got lots/);
    const badFilter = await request(
      socket,
      "POST",
      `/build/prune?filters=${encodeURIComponent('{"nope":["1"]}')}`,
    );
    assert.equal(badFilter.status, 400);

    const prune = await cli(["builder", "prune", "-f"], { DOCKER_BUILDKIT: "0" });
    assert.equal(prune.code, 0, prune.stderr);
    assert.match(prune.stdout, /Total reclaimed space/);

    const noId = await request(socket, "POST", "/build/cancel");
    assert.equal(noId.status, 400);
    assert.equal(JSON.parse(noId.body).message, "build ID not provided");
    assert.equal((await request(socket, "POST", "/build/cancel?id=unknown")).status, 200);

    const marker = `cancel-${process.pid}-${Date.now()}`;
    const ctx = await tarOf([["Dockerfile", `FROM busybox:local\nRUN sleep 60; echo ${marker}\n`]]);
    const pending = request(socket, "POST", "/build?buildid=job1&nocache=1", ctx);
    await poll(async () => ((await processMatching(marker)) ? true : undefined), 20_000, "the RUN process");
    assert.equal((await request(socket, "POST", "/build/cancel?id=job1")).status, 200);
    const canceled = await pending;
    assert.match(canceled.body, /"errorDetail"/);
    await poll(async () => ((await processMatching(marker)) ? undefined : true), 20_000, "the RUN to end");
  });

  test("client disconnect mid-build kills the RUN", async () => {
    const marker = `disconnect-${process.pid}-${Date.now()}`;
    const ctxFile = path.join(tmp, "sleep.tar");
    await writeFile(
      ctxFile,
      await tarOf([["Dockerfile", `FROM busybox:local\nRUN sleep 60; echo ${marker}\n`]]),
    );
    const curl: ChildProcess = spawn(
      "curl",
      [
        "-sN",
        "--unix-socket",
        socket,
        "-X",
        "POST",
        "--data-binary",
        `@${ctxFile}`,
        "http://arca/build?nocache=1",
      ],
      { stdio: "ignore" },
    );
    try {
      await poll(async () => ((await processMatching(marker)) ? true : undefined), 20_000, "the RUN process");
    } finally {
      curl.kill("SIGKILL");
    }
    await poll(async () => ((await processMatching(marker)) ? undefined : true), 20_000, "the RUN to end");
    await ping();
  });
});
