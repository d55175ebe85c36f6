import assert from "node:assert/strict";
import { execFile, spawn } from "node:child_process";
import { createReadStream } from "node:fs";
import { mkdtemp, readFile, rm, stat } from "node:fs/promises";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { promisify } from "node:util";
import Docker from "dockerode";
import { ImageStore, importRootfs } from "../src/images/index.js";
import { writeBusyboxRootfs } from "./support/busybox-rootfs.js";
import { type DaemonProc, startDaemon } from "./support/daemon.js";

const execFileP = promisify(execFile);

interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

function request(socket: string, method: string, urlPath: string, body?: Buffer | string): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = http.request({ socketPath: socket, method, path: urlPath }, (res) => {
      let text = "";
      res.setEncoding("utf8");
      res.on("data", (c: string) => {
        text += c;
      });
      res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text }));
    });
    req.on("error", reject);
    req.end(body);
  });
}

describe("Engine API images with the docker CLI, dockerode and curl", () => {
  let tmp: string;
  let socket: string;
  let daemon: DaemonProc;
  let store: ImageStore;
  let rootfs: string;
  let busyboxId: string;
  let env: NodeJS.ProcessEnv;

  const docker = async (...args: string[]) => execFileP("docker", args, { env, maxBuffer: 64 << 20 });
  /** Runs docker expecting failure; returns exit code and stderr. */
  const dockerFails = async (...args: string[]) => {
    try {
      await docker(...args);
    } catch (err) {
      const e = err as { code: number; stderr: string };
      return { code: e.code, stderr: e.stderr };
    }
    assert.fail(`docker ${args.join(" ")} succeeded`);
  };
  const curl = async (...args: string[]) =>
    (await execFileP("curl", ["-sS", "--unix-socket", socket, ...args], { maxBuffer: 64 << 20 })).stdout;

  before(async () => {
    tmp = await mkdtemp(path.join(os.tmpdir(), "arca-api-img-"));
    socket = path.join(tmp, "arca.sock");
    env = { ...process.env, DOCKER_HOST: `unix://${socket}` };
    const dataRoot = path.join(tmp, "data");
    daemon = startDaemon(dataRoot, socket);
    rootfs = path.join(tmp, "rootfs.tar");
    await writeBusyboxRootfs(rootfs);
    await daemon.waitFor(/ready in/);
    store = await ImageStore.open(path.join(dataRoot, "images"));
    busyboxId = (await importRootfs(store, createReadStream(rootfs), { name: "busybox:local" })).id;
  });

  after(async () => {
    store?.close();
    await daemon?.stop();
    await rm(tmp, { recursive: true, force: true });
  });

  test("docker images lists busybox:local and the sandbox image; reference filter globs", async () => {
    const table = (await docker("images")).stdout;
    assert.match(table, /^REPOSITORY\s+TAG\s+IMAGE ID\s+CREATED\s+SIZE/m);
    assert.match(table, new RegExp(`^busybox\\s+local\\s+${busyboxId.slice(7, 19)}\\s`, "m"));
    assert.match(table, /^arca-buildkit\s+v\S+/m);
    const filtered = (
      await docker("image", "ls", "--filter", "reference=busy*", "--format", "{{.Repository}}:{{.Tag}}")
    ).stdout;
    assert.deepEqual(filtered.trim().split("\n"), ["busybox:local"]);
    const raw = JSON.parse(await curl("http://x/v1.51/images/json"));
    const bb = raw.find((i: { Id: string }) => i.Id === busyboxId);
    assert.deepEqual(bb.RepoTags, ["busybox:local"]);
    assert.equal(bb.ParentId, "");
    assert.equal(bb.SharedSize, -1);
    assert.equal(bb.Containers, 0);
    assert.equal(typeof bb.Created, "number");
    // Unpacked size, as dockerd reports it: the imported rootfs tar is the layer.
    assert.equal(bb.Size, (await stat(rootfs)).size);
    assert.equal(bb.VirtualSize, undefined);
    const old = JSON.parse(await curl("http://x/v1.41/images/json"));
    assert.equal(old.find((i: { Id: string }) => i.Id === busyboxId).VirtualSize, bb.Size);
    const sandbox = raw.find((i: { RepoTags: string[] }) =>
      i.RepoTags.some((t) => t.startsWith("arca-buildkit:")),
    );
    assert.equal(sandbox.Containers, 1);
  });

  test("docker inspect and docker history show the image", async () => {
    const [info] = JSON.parse((await docker("inspect", "busybox:local")).stdout);
    assert.equal(info.Id, busyboxId);
    assert.equal(
      info.Architecture,
      ({ x64: "amd64", arm64: "arm64" } as Record<string, string>)[process.arch],
    );
    assert.equal(info.Os, "linux");
    assert.deepEqual(info.RepoTags, ["busybox:local"]);
    assert.equal(info.RootFS.Type, "layers");
    assert.equal(info.RootFS.Layers.length, 1);
    assert.equal(info.Comment, "Imported from -");
    assert.equal(info.GraphDriver.Name, "overlayfs");
    assert.match(info.Metadata.LastTagTime, /^\d{4}-/);
    assert.equal(info.Config.Cmd, null);
    const hist = (await docker("history", "busybox:local")).stdout;
    assert.match(hist, /^IMAGE\s+CREATED\s+CREATED BY\s+SIZE\s+COMMENT/m);
    assert.match(hist, new RegExp(`^${busyboxId.slice(7, 19)}\\s.*Imported from -`, "m"));
    const items = JSON.parse(await curl("http://x/images/busybox:local/history"));
    assert.equal(items.length, 1);
    assert.equal(items[0].Id, busyboxId);
    assert.deepEqual(items[0].Tags, ["busybox:local"]);
    assert.equal(items[0].Size, (await stat(rootfs)).size);
    assert.equal(info.Size, items[0].Size);
  });

  test("docker tag then docker rmi untags; the image stays", async () => {
    await docker("tag", "busybox:local", "example.com/team/bb:v2");
    const [info] = JSON.parse((await docker("inspect", "example.com/team/bb:v2")).stdout);
    assert.equal(info.Id, busyboxId);
    const out = (await docker("rmi", "example.com/team/bb:v2")).stdout;
    assert.equal(out.trim(), "Untagged: example.com/team/bb:v2");
    await docker("inspect", busyboxId);
  });

  test("docker rmi of a missing image fails with No such image", async () => {
    const r = await dockerFails("rmi", "nope:missing");
    assert.equal(r.code, 1);
    assert.match(r.stderr, /No such image/);
  });

  test("the sandbox image cannot be removed while arca-buildkit uses it", async () => {
    const [sandbox] = (await docker("images", "--format", "{{.Repository}}:{{.Tag}}", "arca-buildkit")).stdout
      .trim()
      .split("\n");
    assert.ok(sandbox?.startsWith("arca-buildkit:"));
    const byName = await dockerFails("rmi", sandbox as string);
    assert.match(
      byName.stderr,
      /conflict: unable to remove repository reference .* \(must force\) - container [0-9a-f]{12} is using its referenced image [0-9a-f]{12}/,
    );
    const [info] = JSON.parse((await docker("inspect", sandbox as string)).stdout);
    const byId = await request(socket, "DELETE", `/v1.51/images/${info.Id}?force=1`);
    assert.equal(byId.status, 409);
    assert.match(
      JSON.parse(byId.body).message,
      /^conflict: unable to delete [0-9a-f]{12} \(cannot be forced\) - image is being used by running container [0-9a-f]{12}$/,
    );
    await docker("inspect", sandbox as string);
  });

  test("docker save | docker load round-trips after rmi with the same ID", async () => {
    const archive = path.join(tmp, "bb.tar");
    await docker("save", "-o", archive, "busybox:local");
    const rmi = (await docker("rmi", "busybox:local")).stdout;
    assert.match(rmi, /^Untagged: busybox:local$/m);
    assert.match(rmi, new RegExp(`^Deleted: ${busyboxId}$`, "m"));
    await dockerFails("inspect", "busybox:local");
    // Through a pipe, as `docker save busybox:local | docker load` would.
    const loaded = await new Promise<string>((resolve, reject) => {
      const p = spawn("docker", ["load"], { env, stdio: ["pipe", "pipe", "inherit"] });
      let out = "";
      p.stdout.on("data", (d: Buffer) => {
        out += d;
      });
      p.on("exit", (code) => (code === 0 ? resolve(out) : reject(new Error(`docker load exited ${code}`))));
      createReadStream(archive).pipe(p.stdin);
    });
    assert.match(loaded, /Loaded image: busybox:local/);
    const [info] = JSON.parse((await docker("inspect", "busybox:local")).stdout);
    assert.equal(info.Id, busyboxId);
    // The multi-name form answers a tarball too.
    const tarball = await request(socket, "GET", "/images/get?names=busybox:local&names=busybox:local");
    assert.equal(tarball.status, 200);
    assert.equal(tarball.headers["content-type"], "application/x-tar");
  });

  test("docker import of a rootfs tar with --change and --message", async () => {
    const out = (
      await docker(
        "import",
        "--change",
        "ENV A=b",
        "--change",
        'CMD ["sh"]',
        "--message",
        "hello",
        rootfs,
        "imported:1",
      )
    ).stdout.trim();
    assert.match(out, /^sha256:[0-9a-f]{64}$/);
    const [info] = JSON.parse((await docker("inspect", "imported:1")).stdout);
    assert.equal(info.Id, out);
    assert.deepEqual(info.Config.Env, ["A=b"]);
    assert.deepEqual(info.Config.Cmd, ["sh"]);
    assert.equal(info.Comment, "hello");
    const bad = await dockerFails("import", "--change", "RUN true", rootfs, "imported:2");
    assert.match(bad.stderr, /run is not a valid change command/);
  });

  test("dockerode listImages and getImage().inspect()", async () => {
    const client = new Docker({ socketPath: socket });
    const list = await client.listImages({ filters: JSON.stringify({ reference: ["busybox"] }) });
    assert.deepEqual(
      list.map((i) => i.RepoTags),
      [["busybox:local"]],
    );
    const info = await client.getImage("busybox:local").inspect();
    assert.equal(info.Id, busyboxId);
    await assert.rejects(
      client.getImage("nope:x").inspect(),
      (err: { statusCode?: number }) => err.statusCode === 404,
    );
  });

  test("error shapes: 404 inspect, 400 bad tag and filters, 404 tag source, 409 multiple names", async () => {
    const missing = await request(socket, "GET", "/v1.51/images/nope:x/json");
    assert.equal(missing.status, 404);
    assert.deepEqual(JSON.parse(missing.body), { message: "No such image: nope:x" });
    const badTag = await request(socket, "POST", "/v1.51/images/busybox:local/tag?repo=UPPER&tag=x");
    assert.equal(badTag.status, 400);
    assert.match(JSON.parse(badTag.body).message, /invalid reference format/);
    const noSource = await request(socket, "POST", "/v1.51/images/nope:x/tag?repo=y&tag=z");
    assert.equal(noSource.status, 404);
    const badFilter = await request(
      socket,
      "GET",
      `/images/json?filters=${encodeURIComponent('{"colour":["x"]}')}`,
    );
    assert.equal(badFilter.status, 400);
    assert.deepEqual(JSON.parse(badFilter.body), { message: "invalid filter 'colour'" });
    const badJSON = await request(socket, "GET", "/images/json?filters=%7Bnope");
    assert.equal(badJSON.status, 400);
    const tagged = await request(socket, "POST", "/images/busybox:local/tag?repo=other&tag=1");
    assert.equal(tagged.status, 201);
    const multi = await request(socket, "DELETE", `/images/${busyboxId.slice(7, 19)}`);
    assert.equal(multi.status, 409);
    assert.match(
      JSON.parse(multi.body).message,
      /\(must be forced\) - image is referenced in multiple repositories/,
    );
    const gone = await request(socket, "DELETE", "/images/other:1");
    assert.deepEqual(JSON.parse(gone.body), [{ Untagged: "other:1" }]);
  });

  test("load of garbage is a 400; pull and push of an unreachable registry say which host failed", async () => {
    const garbage = await request(socket, "POST", "/v1.51/images/load", Buffer.alloc(4096, 7));
    assert.equal(garbage.status, 400);
    assert.ok(JSON.parse(garbage.body).message);
    // No network here: docker.io's name does not resolve (the egress layer says so).
    const pull = await dockerFails("pull", "alpine:3");
    assert.match(pull.stderr, /registry-1\.docker\.io/);
    const push = await dockerFails("push", "busybox:local");
    assert.match(push.stderr, /registry-1\.docker\.io/);
    const missing = await dockerFails("push", "nothere:1");
    assert.match(missing.stderr, /An image does not exist locally with the tag: nothere:1/);
  });

  test("prune removes dangling images only; the answer has dockerd's shape", async () => {
    const id = JSON.parse(
      (await request(socket, "POST", "/images/create?fromSrc=-", await readFile(rootfs))).body,
    ).status;
    assert.match(id, /^sha256:/);
    const dangling = JSON.parse(
      await curl(`http://x/images/json?filters=${encodeURIComponent('{"dangling":{"true":true}}')}`),
    );
    assert.deepEqual(
      dangling.map((i: { Id: string }) => i.Id),
      [id],
    );
    const pruned = JSON.parse((await request(socket, "POST", "/images/prune")).body);
    assert.deepEqual(pruned.ImagesDeleted, [{ Deleted: id }]);
    // Its one layer is busybox:local's too (same rootfs): as with dockerd, removing it frees no layer.
    assert.equal(pruned.SpaceReclaimed, 0);
    const again = JSON.parse((await request(socket, "POST", "/images/prune")).body);
    assert.deepEqual(again, { ImagesDeleted: null, SpaceReclaimed: 0 });
    await docker("inspect", "busybox:local");
  });
});
