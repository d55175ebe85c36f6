import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { createReadStream } from "node:fs";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import http from "node:http";
import type { Socket } from "node:net";
import os from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import Docker from "dockerode";
import { Health } from "../src/buildkit/gen/grpc/health/v1/health_pb.js";
import { attachable } from "../src/buildkit/session/attachable.js";
import { createFileSyncService } from "../src/buildkit/session/filesync/index.js";
import { createHealthService } from "../src/buildkit/session/health.js";
import { rawFileSyncAttachable } from "../src/buildkit/session/raw-file-sync.js";
import { createSessionServer } from "../src/buildkit/session/session.js";
import { socketPair } from "../src/buildkit/session/socket-pair.js";
import { ImageStore, importRootfs } from "../src/images/index.js";
import { writeBusyboxRootfs } from "./support/busybox-rootfs.js";
import { type DaemonProc, startDaemon } from "./support/daemon.js";
import { imageFiles } from "./support/image-files.js";

interface Reply {
  status: number;
  body: string;
}

function request(socket: string, method: string, urlPath: string, headers: http.OutgoingHttpHeaders = {}) {
  return new Promise<Reply>((resolve, reject) => {
    const req = http.request({ socketPath: socket, method, path: urlPath, headers }, (res) => {
      let text = "";
      res.setEncoding("utf8");
      res.on("data", (c: string) => {
        text += c;
      });
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body: text }));
      res.on("error", reject);
    });
    req.on("error", reject);
    req.end();
  });
}

type SessionOpen = { upgraded: true; socket: Socket } | ({ upgraded: false } & Reply);

/** POST /session as clients send it; headers as [name, value] pairs so Grpc-Method can repeat. */
function openSession(socket: string, headers: [string, string][]): Promise<SessionOpen> {
  return new Promise((resolve, reject) => {
    const req = http.request({
      socketPath: socket,
      method: "POST",
      path: "/session",
      headers: headers.flat(),
    } as http.RequestOptions);
    req.on("upgrade", (res, sock, head) => {
      assert.equal(res.statusCode, 101);
      assert.equal(res.headers.upgrade, "h2c");
      // buildkitd's HTTP/2 preface may arrive with the 101 (in head): keep it in front.
      if (head.length) sock.unshift(head);
      resolve({ upgraded: true, socket: sock as Socket });
    });
    req.on("response", (res) => {
      let text = "";
      res.setEncoding("utf8");
      res.on("data", (c: string) => {
        text += c;
      });
      res.on("end", () => resolve({ upgraded: false, status: res.statusCode ?? 0, body: text }));
    });
    req.on("error", reject);
    req.end();
  });
}

describe("POST /session bridged to buildkitd, builds with the client's session", () => {
  let tmp: string;
  let dataRoot: string;
  let socket: string;
  let daemon: DaemonProc;
  let docker: Docker;
  let store: ImageStore;

  before(async () => {
    tmp = await mkdtemp(path.join(os.tmpdir(), "arca-api-session-"));
    dataRoot = path.join(tmp, "data");
    socket = path.join(tmp, "arca.sock");
    const rootfs = path.join(tmp, "busybox.tar");
    await writeBusyboxRootfs(rootfs);
    store = await ImageStore.open(path.join(dataRoot, "images"));
    await importRootfs(store, createReadStream(rootfs), { name: "busybox:local" });
    daemon = startDaemon(dataRoot, socket);
    await daemon.waitFor(/ready in/);
    docker = new Docker({ socketPath: socket });
  });

  after(async () => {
    if (process.env.ARCA_TEST_DEBUG) console.log(daemon?.output());
    store?.close();
    await daemon?.stop();
    await rm(tmp, { recursive: true, force: true });
  });

  test("dockerode buildImage with version 2 (its /session plus the context as body)", async () => {
    const dir = path.join(tmp, "dockerode-ctx");
    await mkdir(dir, { recursive: true });
    await writeFile(
      path.join(dir, "Dockerfile"),
      "FROM busybox:local\nCOPY file.txt /file.txt\nRUN cat /file.txt\n",
    );
    await writeFile(path.join(dir, "file.txt"), "hello through the session\n");
    const stream = await docker.buildImage(
      { context: dir, src: ["Dockerfile", "file.txt"] },
      { t: "sess:1", version: "2" },
    );
    const events = await new Promise<unknown[]>((resolve, reject) =>
      docker.modem.followProgress(stream, (err, res) => (err ? reject(err) : resolve(res))),
    );
    const errors = events.filter((e) => (e as { error?: string }).error);
    assert.deepEqual(errors, []);
    const inspect = await request(socket, "GET", "/images/sess:1/json");
    assert.equal(inspect.status, 200, inspect.body);
    const files = await imageFiles(store, "sess:1");
    assert.equal(files.get("file.txt")?.content, "hello through the session\n");
  });

  test("remote=client-session: the context comes from the client's FileSync over /session", async () => {
    const ctx = path.join(tmp, "session-ctx");
    await mkdir(ctx, { recursive: true });
    await writeFile(
      path.join(ctx, "Dockerfile"),
      "FROM busybox:local\nCOPY file.txt /file.txt\nRUN cat /file.txt\n",
    );
    await writeFile(path.join(ctx, "file.txt"), "served by the client\n");
    const id = randomUUID();
    // The client side of a session, as buildx runs it: an h2c gRPC server on the hijacked socket.
    const server = createSessionServer([
      attachable(Health, createHealthService()),
      rawFileSyncAttachable(
        createFileSyncService({ dirs: { context: { path: ctx }, dockerfile: { path: ctx } } }),
      ),
    ]);
    const opened = await openSession(socket, [
      ["Connection", "Upgrade"],
      ["Upgrade", "h2c"],
      ["X-Docker-Expose-Session-Uuid", id],
      ["X-Docker-Expose-Session-Sharedkey", "test-key"],
      ["X-Docker-Expose-Session-Grpc-Method", "/moby.filesync.v1.FileSync/DiffCopy"],
      ["X-Docker-Expose-Session-Grpc-Method", "/grpc.health.v1.Health/Check"],
    ]);
    assert.ok(opened.upgraded, JSON.stringify(opened));
    // node:http2 reads a net.Socket's handle directly and would miss unshifted bytes: serve it
    // on a socket pair fed through JS instead (as Arca's own sessions do).
    const [inner, outer] = await socketPair();
    server.emit("connection", inner);
    opened.socket.pipe(outer);
    outer.pipe(opened.socket);
    try {
      // While it is open, the same id is refused.
      const dup = await openSession(socket, [
        ["Connection", "Upgrade"],
        ["Upgrade", "h2c"],
        ["X-Docker-Expose-Session-Uuid", id],
      ]);
      assert.ok(!dup.upgraded);
      assert.equal(dup.status, 400);
      assert.deepEqual(JSON.parse(dup.body), { message: `session ${id} already exists` });

      const q = new URLSearchParams({ version: "2", remote: "client-session", session: id, t: "sess:2" });
      const r = await request(socket, "POST", `/build?${q}`);
      assert.equal(r.status, 200, r.body);
      const lines = r.body
        .trim()
        .split("\n")
        .map((l) => JSON.parse(l) as { id?: string; error?: string; aux?: { ID?: string } });
      assert.deepEqual(
        lines.filter((l) => l.error),
        [],
      );
      assert.ok(lines.some((l) => l.id === "moby.image.id" && l.aux?.ID?.startsWith("sha256:")));
      const files = await imageFiles(store, "sess:2");
      assert.equal(files.get("file.txt")?.content, "served by the client\n");
    } finally {
      opened.socket.destroy();
      outer.destroy();
      inner.destroy();
      server.close();
    }
    // Once the connection is gone the id is free again (the bridge notices the close).
    for (let i = 0; ; i++) {
      const again = await openSession(socket, [
        ["Connection", "Upgrade"],
        ["Upgrade", "h2c"],
        ["X-Docker-Expose-Session-Uuid", id],
      ]);
      if (again.upgraded) {
        again.socket.destroy();
        break;
      }
      assert.ok(i < 20, `session id still taken: ${again.body}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  });

  test("bad /session and /build requests are refused as dockerd does", async () => {
    const noUpgrade = await request(socket, "POST", "/session", { "X-Docker-Expose-Session-Uuid": "x1" });
    assert.equal(noUpgrade.status, 400);
    assert.deepEqual(JSON.parse(noUpgrade.body), { message: "no upgrade proto in request" });

    const wrong = await openSession(socket, [
      ["Connection", "Upgrade"],
      ["Upgrade", "tcp"],
      ["X-Docker-Expose-Session-Uuid", "x2"],
    ]);
    assert.ok(!wrong.upgraded);
    assert.equal(wrong.status, 400);
    assert.deepEqual(JSON.parse(wrong.body), { message: "protocol tcp not supported" });

    const v1 = await request(socket, "POST", "/build?remote=client-session&session=x3");
    assert.equal(v1.status, 400, v1.body);

    const missing = await request(socket, "POST", "/build?version=2&remote=client-session");
    assert.equal(missing.status, 400, missing.body);
  });
});
