import assert from "node:assert/strict";
import { execFile, spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { createReadStream, existsSync } from "node:fs";
import { chown, mkdir, mkdtemp, readdir, rm, stat, writeFile } from "node:fs/promises";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { promisify } from "node:util";
import { gzipSync } from "node:zlib";
import tar from "tar-stream";
import { ImageStore } from "../src/images/index.js";
import { seedBusybox } from "./support/busybox-rootfs.js";
import { type DaemonProc, startDaemon } from "./support/daemon.js";
import { imageFiles } from "./support/image-files.js";
import { poll } from "./support/poll.js";

const run = promisify(execFile);
const repo = path.resolve(import.meta.dirname, "..");

interface Reply {
  status: number;
  body: string;
}

function request(
  socketPath: string,
  method: string,
  urlPath: string,
  body?: Buffer | string,
  headers: Record<string, string> = {},
): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = http.request({ socketPath, method, path: urlPath, headers }, (res) => {
      let text = "";
      res.setEncoding("utf8");
      res.on("data", (c: string) => {
        text += c;
      });
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body: text }));
    });
    req.on("error", reject);
    req.end(body);
  });
}

async function tarOf(add: (p: tar.Pack) => void): Promise<Buffer> {
  const pack = tar.pack();
  add(pack);
  pack.finalize();
  const chunks: Buffer[] = [];
  for await (const c of pack) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

/** Every blob in the store hashes to its name. */
async function verifyStore(dataRoot: string): Promise<number> {
  const dir = path.join(dataRoot, "images", "blobs", "sha256");
  const names = await readdir(dir);
  for (const hex of names) {
    const hash = createHash("sha256");
    for await (const c of createReadStream(path.join(dir, hex))) hash.update(c as Buffer);
    assert.equal(hash.digest("hex"), hex, `blob ${hex} verifies`);
  }
  return names.length;
}

describe("red-team findings stay fixed (real daemon, docker CLI)", () => {
  let tmp: string;
  let dataRoot: string;
  let socket: string;
  let daemon: DaemonProc;
  let env: NodeJS.ProcessEnv;

  const docker = async (args: string[], input?: Buffer) => {
    return new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
      const child = spawn("docker", args, { env });
      let stdout = "";
      let stderr = "";
      child.stdout.on("data", (d: Buffer) => {
        stdout += d;
      });
      child.stderr.on("data", (d: Buffer) => {
        stderr += d;
      });
      child.on("close", (code) => resolve({ code: code ?? -1, stdout, stderr }));
      child.stdin.end(input);
    });
  };

  before(async () => {
    tmp = await mkdtemp(path.join(os.tmpdir(), "arca-hardening-"));
    dataRoot = path.join(tmp, "data");
    socket = path.join(tmp, "arca.sock");
    await seedBusybox(dataRoot, tmp);
    daemon = startDaemon(dataRoot, socket, ["--max-context-size", "16m"]);
    await daemon.waitFor(/ready in/);
    env = { ...process.env, DOCKER_HOST: `unix://${socket}`, DOCKER_CONFIG: path.join(tmp, "docker-config") };
  });

  after(async () => {
    if (process.env.ARCA_TEST_DEBUG) console.log(daemon?.output());
    await daemon?.stop();
    await rm(tmp, { recursive: true, force: true });
  });

  test("the sandbox's registry endpoint refuses pushes no build registered; builds still land", async () => {
    const registrySock = path.join(dataRoot, "run", "sandbox", "registry.sock");
    assert.ok(existsSync(registrySock));
    const config = Buffer.from(JSON.stringify({ architecture: "amd64", os: "linux", rootfs: {} }));
    const digest = `sha256:${createHash("sha256").update(config).digest("hex")}`;
    const blob = await request(
      registrySock,
      "POST",
      `/v2/library/pwned/blobs/uploads/?digest=${digest}`,
      config,
    );
    assert.equal(blob.status, 403, blob.body);
    assert.equal(JSON.parse(blob.body).errors[0].code, "DENIED");
    const manifest = JSON.stringify({
      schemaVersion: 2,
      mediaType: "application/vnd.oci.image.manifest.v1+json",
      config: { mediaType: "application/vnd.oci.image.config.v1+json", digest, size: config.length },
      layers: [],
    });
    const put = await request(registrySock, "PUT", "/v2/library/pwned/manifests/x", manifest, {
      "Content-Type": "application/vnd.oci.image.manifest.v1+json",
    });
    assert.equal(put.status, 403, put.body);
    const gone = await docker(["image", "inspect", "pwned:x"]);
    assert.notEqual(gone.code, 0);

    const ctx = path.join(tmp, "landed");
    await mkdir(ctx);
    await writeFile(path.join(ctx, "Dockerfile"), "FROM busybox:local\nRUN echo built > /built\n");
    const b = await docker(["build", "-t", "landed:1", ctx]);
    assert.equal(b.code, 0, b.stderr);
    const untagged = await docker(["build", "-q", ctx]);
    assert.equal(untagged.code, 0, untagged.stderr);
    assert.match(untagged.stdout, /^sha256:[a-f0-9]{64}$/m);
    const inspect = await docker(["image", "inspect", "landed:1", "--format", "{{.Id}}"]);
    assert.equal(inspect.code, 0, inspect.stderr);
    // Both builds' grants ended with them.
    const late = await request(registrySock, "POST", "/v2/library/landed/blobs/uploads/");
    assert.equal(late.status, 403);
  });

  test("arca build through the running daemon asks for its push grant and lands", async () => {
    const ctx = path.join(tmp, "viacli");
    await mkdir(ctx);
    await writeFile(path.join(ctx, "Dockerfile"), "FROM busybox:local\nRUN echo cli > /cli\n");
    const r = await run(
      process.execPath,
      [
        "--import",
        "tsx",
        path.join(repo, "src/cli/run.ts"),
        "build",
        "--data-root",
        dataRoot,
        "-t",
        "viacli:1",
        ctx,
      ],
      { cwd: repo, maxBuffer: 16 << 20 },
    );
    assert.match(r.stderr, /Successfully tagged viacli:1/);
    const inspect = await docker(["image", "inspect", "viacli:1", "--format", "{{.Id}}"]);
    assert.equal(inspect.code, 0, inspect.stderr);
  });

  test("a FIFO in a classic build context lands in the image; a device node is left out, with a warning", async () => {
    const ctx = path.join(tmp, "special");
    await mkdir(ctx);
    await writeFile(path.join(ctx, "Dockerfile"), "FROM busybox:local\nCOPY . /ctx/\n");
    await run("mkfifo", [path.join(ctx, "pipe")]);
    await run("mknod", [path.join(ctx, "null"), "c", "1", "3"]);
    const b = await docker(["build", "-t", "special:1", ctx]);
    assert.equal(b.code, 0, b.stderr);
    assert.match(b.stdout, /\[WARNING\]: device nodes in the build context were left out .*: null/);
    const store = await ImageStore.open(path.join(dataRoot, "images"));
    try {
      const files = await imageFiles(store, "special:1");
      assert.equal(files.get("ctx/pipe")?.type, "fifo");
      assert.equal(files.get("ctx/null"), undefined);
      assert.equal(files.get("ctx/Dockerfile")?.type, "file");
    } finally {
      store.close();
    }
  });

  test("docker import refuses a rootfs with '..', absolute names or a hard link to /etc/shadow", async () => {
    const cases = [
      await tarOf((p) => p.entry({ name: "../escape" }, "x")),
      await tarOf((p) => p.entry({ name: "/etc/cron.d/x" }, "x")),
      await tarOf((p) => p.entry({ name: "shadow", type: "link", linkname: "/etc/shadow" })),
    ];
    for (const body of cases) {
      const r = await docker(["import", "-", "evil:1"], body);
      assert.notEqual(r.code, 0);
      assert.match(r.stderr, /invalid rootfs archive/);
    }
    assert.notEqual((await docker(["image", "inspect", "evil:1"])).code, 0);
  });

  test("docker load takes a valid archive whose config is not named by its digest", async () => {
    const saved = await new Promise<Buffer>((resolve, reject) => {
      const chunks: Buffer[] = [];
      const child = spawn("docker", ["save", "busybox:local"], { env });
      child.stdout.on("data", (d: Buffer) => chunks.push(d));
      child.on("close", (code) => (code === 0 ? resolve(Buffer.concat(chunks)) : reject(new Error("save"))));
    });
    const entries = new Map<string, Buffer>();
    const extract = tar.extract();
    const reading = (async () => {
      for await (const e of extract) {
        const chunks: Buffer[] = [];
        for await (const c of e) chunks.push(c as Buffer);
        entries.set(e.header.name, Buffer.concat(chunks));
      }
    })();
    extract.end(saved);
    await reading;
    const [m] = JSON.parse(String(entries.get("manifest.json")));
    const archive = await tarOf((p) => {
      p.entry({ name: "cfg.json" }, entries.get(m.Config) as Buffer);
      p.entry({ name: "layer.tar.gz" }, entries.get(m.Layers[0]) as Buffer);
      p.entry(
        { name: "manifest.json" },
        JSON.stringify([{ Config: "cfg.json", RepoTags: ["renamed:1"], Layers: ["layer.tar.gz"] }]),
      );
    });
    const r = await docker(["load"], archive);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /Loaded image: renamed:1/);
  });

  test("a context inflating past --max-context-size is refused with 400 while it streams", async () => {
    const zeros = gzipSync(
      await tarOf((p) => {
        p.entry({ name: "Dockerfile" }, "FROM busybox:local\n");
        p.entry({ name: "zeros" }, Buffer.alloc(64 << 20));
      }),
    );
    assert.ok(zeros.length < 1 << 20);
    const r = await request(socket, "POST", "/build?t=big:1", zeros);
    assert.equal(r.status, 400, r.body);
    assert.match(JSON.parse(r.body).message, /larger than 16777216 bytes once decompressed/);
    assert.deepEqual(await readdir(path.join(dataRoot, "tmp")), []);
  });

  test("leftovers of a daemon killed mid-load and mid-build are swept at the next start", async () => {
    const ingest = path.join(dataRoot, "images", "ingest");
    // A load whose layer is still streaming when the daemon dies.
    const load = http.request({ socketPath: socket, method: "POST", path: "/images/load" });
    load.on("error", () => {});
    const pack = tar.pack();
    pack.pipe(load);
    const big = pack.entry({ name: `blobs/sha256/${"a".repeat(64)}`, size: 64 << 20 });
    // The daemon's death fails the requests, and through the pipes the archives being written.
    for (const s of [pack, big]) s.on("error", () => {});
    big.write(Buffer.alloc(8 << 20, 1));
    // A build whose context is still uploading.
    const build = http.request({ socketPath: socket, method: "POST", path: "/build?t=killed:1" });
    build.on("error", () => {});
    const ctx = tar.pack();
    ctx.pipe(build);
    ctx.entry({ name: "Dockerfile" }, "FROM busybox:local\n");
    const file = ctx.entry({ name: "big", size: 64 << 20 });
    for (const s of [ctx, file]) s.on("error", () => {});
    file.write(Buffer.alloc(8 << 20, 2));
    await poll(
      async () => {
        const blobs = (await readdir(ingest)).filter((n) => n.startsWith("blob-"));
        const spools = (await readdir(path.join(dataRoot, "tmp"))).filter((n) => n.startsWith("build-"));
        return blobs.length > 0 && spools.length > 0 ? true : undefined;
      },
      30_000,
      "an ingest file and a context spool",
    );
    // And an upload from before owners were recorded.
    await writeFile(path.join(ingest, "upload-11111111-2222-4333-8444-555555555555"), Buffer.alloc(4096));
    daemon.proc.kill("SIGKILL");
    await daemon.stop();
    load.destroy();
    build.destroy();
    assert.ok((await readdir(ingest)).length >= 2);

    daemon = startDaemon(dataRoot, socket, ["--max-context-size", "16m"]);
    await daemon.waitFor(/ready in/);
    assert.match(daemon.output(), /removed \d+ leftover temp files/);
    assert.deepEqual(await readdir(ingest), []);
    assert.deepEqual(await readdir(path.join(dataRoot, "tmp")), []);
    assert.ok((await verifyStore(dataRoot)) > 0);
    const df = await docker(["system", "df"]);
    assert.equal(df.code, 0, df.stderr);
    assert.equal((await docker(["image", "inspect", "landed:1"])).code, 0, "images survive");
  });

  test("a socket path in a directory another user owns is refused with the reason", async () => {
    const theirs = path.join(tmp, "theirs");
    await mkdir(theirs);
    await chown(theirs, 65534, 65534);
    const refused = await run(
      process.execPath,
      [
        "--import",
        "tsx",
        path.join(repo, "src/cli/run.ts"),
        "daemon",
        "--data-root",
        path.join(tmp, "d3"),
        "--socket",
        `unix://${path.join(theirs, "arca.sock")}`,
      ],
      { cwd: repo, timeout: 120_000 },
    ).then(
      () => assert.fail("daemon started on another user's directory"),
      (err: { code?: number; stderr?: string }) => err,
    );
    assert.equal(refused.code, 1);
    assert.match(
      refused.stderr ?? "",
      /refusing to listen on .*theirs\/arca\.sock: its directory .*theirs belongs to uid 65534/,
    );
    assert.equal(existsSync(path.join(theirs, "arca.sock")), false);
    assert.equal((await stat(theirs)).uid, 65534);
  });
});
