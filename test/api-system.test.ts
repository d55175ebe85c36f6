import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtemp, rm, stat } from "node:fs/promises";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { promisify } from "node:util";
import { type DaemonProc, startDaemon } from "./support/daemon.js";

const run = promisify(execFile);

function request(
  socket: string,
  method: string,
  urlPath: string,
): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ socketPath: socket, method, path: urlPath }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (c: string) => {
        body += c;
      });
      res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.on("error", reject);
    req.end();
  });
}

describe("Engine API basics: ping, version, info, errors, socket", () => {
  let tmp: string;
  let socket: string;
  let daemon: DaemonProc;

  before(async () => {
    tmp = await mkdtemp(path.join(os.tmpdir(), "arca-api-sys-"));
    socket = path.join(tmp, "arca.sock");
    daemon = startDaemon(path.join(tmp, "data"), socket);
    await daemon.waitFor(/ready in/);
  });

  after(async () => {
    await daemon?.stop();
    await rm(tmp, { recursive: true, force: true });
  });

  test("/_ping GET and HEAD carry dockerd's headers, versioned and not", async () => {
    for (const p of ["/_ping", "/v1.51/_ping", "/v1.24/_ping"]) {
      const r = await request(socket, "GET", p);
      assert.equal(r.status, 200);
      assert.equal(r.body, "OK");
      assert.equal(r.headers["api-version"], "1.51");
      assert.equal(r.headers["builder-version"], "2");
      assert.equal(r.headers.ostype, "linux");
      assert.equal(r.headers["cache-control"], "no-cache, no-store, must-revalidate");
    }
    const head = await request(socket, "HEAD", "/_ping");
    assert.equal(head.status, 200);
    assert.equal(head.headers["content-length"], "0");
  });

  test("unknown paths are 404 page not found; out-of-range versions are 400", async () => {
    const r = await request(socket, "GET", "/v1.51/nope");
    assert.equal(r.status, 404);
    assert.deepEqual(JSON.parse(r.body), { message: "page not found" });
    const old = await request(socket, "GET", "/v1.12/info");
    assert.equal(old.status, 400);
    assert.match(JSON.parse(old.body).message, /client version 1.12 is too old/);
    const young = await request(socket, "GET", "/v1.99/info");
    assert.equal(young.status, 400);
    assert.match(JSON.parse(young.body).message, /client version 1.99 is too new/);
  });

  test("the docker CLI sees Arca: version with BuildKit, info", async () => {
    const env = { ...process.env, DOCKER_HOST: `unix://${socket}` };
    const v = JSON.parse((await run("docker", ["version", "--format", "{{json .Server}}"], { env })).stdout);
    assert.equal(v.ApiVersion, "1.51");
    assert.ok(
      v.Components.some(
        (c: { Name: string; Version: string }) => c.Name === "BuildKit" && c.Version === "v0.32.2",
      ),
    );
    const info = JSON.parse((await run("docker", ["info", "--format", "{{json .}}"], { env })).stdout);
    assert.equal(info.DockerRootDir, path.join(tmp, "data"));
    assert.ok(info.Images >= 1, "the sandbox image is in the store");
  });

  test("the API socket is not world-accessible and a second daemon on it is refused", async () => {
    const st = await stat(socket);
    assert.equal(st.mode & 0o777, 0o660);
    const second = startDaemon(path.join(tmp, "data2"), socket);
    const code = await new Promise<number | null>((resolve) => second.proc.once("exit", resolve));
    assert.notEqual(code, 0);
    assert.match(second.output(), /another process is listening|in use/i);
    const r = await request(socket, "GET", "/_ping");
    assert.equal(r.status, 200, "the first daemon still serves");
  });
});
