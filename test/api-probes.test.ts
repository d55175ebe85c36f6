import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { promisify } from "node:util";
import Docker from "dockerode";
import { type DaemonProc, startDaemon } from "./support/daemon.js";
import { findDockerd, type StockDockerd, startStockDockerd } from "./support/stock-dockerd.js";

const run = promisify(execFile);

interface Reply {
  status: number;
  body: string;
  json: () => unknown;
}

function request(socket: string, method: string, urlPath: string, body?: string): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const headers = body === undefined ? {} : { "Content-Type": "application/json" };
    const req = http.request({ socketPath: socket, method, path: urlPath, headers }, (res) => {
      let text = "";
      res.setEncoding("utf8");
      res.on("data", (c: string) => {
        text += c;
      });
      res.on("end", () =>
        resolve({ status: res.statusCode ?? 0, body: text, json: () => JSON.parse(text) as unknown }),
      );
    });
    req.on("error", reject);
    req.end(body);
  });
}

const enc = (v: unknown) => encodeURIComponent(JSON.stringify(v));
const BUILD_ONLY = "not supported by Arca (build engine only): ";

type Check = (r: Reply) => void;
const status =
  (code: number, check?: (body: unknown) => void): Check =>
  (r) => {
    assert.equal(r.status, code, r.body);
    check?.(r.body === "" ? undefined : r.json());
  };
const unsupported =
  (what: string): Check =>
  (r) => {
    assert.equal(r.status, 501, r.body);
    assert.deepEqual(r.json(), { message: `${BUILD_ONLY}${what}` });
  };
const names = (b: unknown) => (b as { Name: string }[]).map((n) => n.Name).sort();

/**
 * What the docker CLI 28, docker compose v2, testcontainers-node, dockerode
 * and the Python docker SDK ask during build-only workflows (connect, look
 * around, build, inspect, clean up), and what a build engine then answers.
 * Every route here answered 404 "page not found" before, or a shape clients
 * did not expect.
 */
const CLIENT_ROUTES: [who: string, method: string, path: string, check: Check, body?: string][] = [
  ["all: connect", "HEAD", "/_ping", status(200)],
  ["all: connect", "GET", "/_ping", (r) => assert.equal(r.body, "OK")],
  [
    "all: version negotiation",
    "GET",
    "/version",
    status(200, (b) => assert.equal((b as { ApiVersion: string }).ApiVersion, "1.51")),
  ],
  [
    "all: docker info, tc strategy",
    "GET",
    "/info",
    status(200, (b) =>
      assert.equal((b as { Swarm: { LocalNodeState: string } }).Swarm.LocalNodeState, "inactive"),
    ),
  ],
  ["docker ps, tc reaper lookup", "GET", "/containers/json", status(200, (b) => assert.deepEqual(b, []))],
  ["docker ps -a", "GET", "/containers/json?all=1", status(200, (b) => assert.deepEqual(b, []))],
  [
    "compose ps/down",
    "GET",
    `/containers/json?all=1&filters=${enc({ label: ["com.docker.compose.project=p"] })}`,
    status(200, (b) => assert.deepEqual(b, [])),
  ],
  [
    "docker network ls, compose",
    "GET",
    "/networks",
    status(200, (b) => assert.deepEqual(names(b), ["bridge", "host", "none"])),
  ],
  [
    "compose up/down",
    "GET",
    `/networks?filters=${enc({ name: { p_default: true } })}`,
    status(200, (b) => assert.deepEqual(b, [])),
  ],
  [
    "compose: external network",
    "GET",
    `/networks?filters=${enc({ name: { bridge: true } })}`,
    status(200, (b) => assert.deepEqual(names(b), ["bridge"])),
  ],
  [
    "compose down",
    "GET",
    `/networks?filters=${enc({ label: { "com.docker.compose.project=p": true } })}`,
    status(200, (b) => assert.deepEqual(b, [])),
  ],
  [
    "docker network ls -f type=custom",
    "GET",
    `/networks?filters=${enc({ type: { custom: true } })}`,
    status(200, (b) => assert.deepEqual(b, [])),
  ],
  [
    "docker network ls -f bad",
    "GET",
    `/networks?filters=${enc({ nope: { x: true } })}`,
    (r) => assert.deepEqual([r.status, r.json()], [400, { message: "invalid filter 'nope'" }]),
  ],
  [
    "testcontainers: host gateway",
    "GET",
    "/networks/bridge",
    status(200, (b) =>
      assert.deepEqual((b as { IPAM: unknown }).IPAM, {
        Driver: "default",
        Options: null,
        Config: [{ Subnet: "172.17.0.0/16", Gateway: "172.17.0.1" }],
      }),
    ),
  ],
  [
    "docker network inspect host",
    "GET",
    "/networks/host",
    status(200, (b) => assert.equal((b as { Driver: string }).Driver, "host")),
  ],
  [
    "docker network inspect none",
    "GET",
    "/networks/none",
    status(200, (b) => assert.equal((b as { Driver: string }).Driver, "null")),
  ],
  [
    "compose: project network",
    "GET",
    "/networks/p_default",
    (r) => assert.deepEqual([r.status, r.json()], [404, { message: "network p_default not found" }]),
  ],
  [
    "docker network prune",
    "POST",
    "/networks/prune",
    status(200, (b) => assert.deepEqual(b, { NetworksDeleted: null })),
  ],
  [
    "docker volume ls, compose",
    "GET",
    "/volumes",
    status(200, (b) => assert.ok(Array.isArray((b as { Volumes: unknown[] }).Volumes))),
  ],
  ["docker images, compose", "GET", "/images/json", status(200)],
  [
    "compose: image exists?",
    "GET",
    "/images/p-app/json",
    (r) => {
      assert.equal(r.status, 404);
      assert.match((r.json() as { message: string }).message, /No such image: p-app/);
    },
  ],
  [
    "docker system df",
    "GET",
    "/system/df",
    status(200, (b) => assert.ok(Array.isArray((b as { Volumes: unknown[] }).Volumes))),
  ],
  ["docker builder prune", "POST", "/build/prune", status(200)],
  [
    "compose up",
    "POST",
    "/networks/create",
    unsupported("creating networks"),
    JSON.stringify({ Name: "p_default" }),
  ],
  [
    "compose up, docker run",
    "POST",
    "/containers/create?name=p-app-1",
    unsupported("creating containers"),
    JSON.stringify({ Image: "busybox:local" }),
  ],
  [
    "docker network connect",
    "POST",
    "/networks/bridge/connect",
    unsupported("connecting containers to networks"),
    "{}",
  ],
  [
    "docker network rm bridge",
    "DELETE",
    "/networks/bridge",
    unsupported("removing networks (bridge is a pre-defined network)"),
  ],
  [
    "docker attach",
    "POST",
    "/containers/arca-buildkit/attach?stream=1",
    unsupported("attaching to containers"),
  ],
  [
    "docker cp",
    "GET",
    "/containers/arca-buildkit/archive?path=/",
    unsupported("copying files from containers"),
  ],
  ["docker commit", "POST", "/commit?container=x", unsupported("committing containers")],
  [
    "docker top (no such container)",
    "GET",
    "/containers/nope/top",
    (r) => assert.deepEqual([r.status, r.json()], [404, { message: "No such container: nope" }]),
  ],
  ["docker stats", "GET", "/containers/arca-buildkit/stats", unsupported("container stats")],
  ["docker top", "GET", "/containers/arca-buildkit/top", unsupported("listing container processes")],
  ["docker volume create", "POST", "/volumes/create", unsupported("creating volumes"), "{}"],
  ["docker swarm init", "POST", "/swarm/init", unsupported("swarm mode"), "{}"],
  ["docker info (swarm)", "GET", "/swarm", unsupported("swarm mode")],
  ["docker node ls", "GET", "/nodes", unsupported("swarm nodes")],
  ["docker service ls", "GET", "/services", unsupported("swarm services")],
  ["docker stack ps", "GET", "/tasks", unsupported("swarm tasks")],
  ["docker secret ls", "GET", "/secrets", unsupported("swarm secrets")],
  ["docker config ls", "GET", "/configs", unsupported("swarm configs")],
  ["docker plugin ls", "GET", "/plugins", unsupported("plugins")],
  ["docker plugin install", "POST", "/plugins/pull?remote=x", unsupported("plugins"), "[]"],
  ["docker search", "GET", "/images/search?term=x", unsupported("searching registries")],
  [
    "docker manifest / buildx imagetools",
    "GET",
    "/distribution/busybox:1/json",
    unsupported("querying registries for image manifests"),
  ],
  [
    "docker login (to docker.io, which does not resolve here)",
    "POST",
    "/auth",
    (r) => {
      assert.equal(r.status, 503);
      assert.match((r.json() as { message: string }).message, /registry-1\.docker\.io/);
    },
    "{}",
  ],
  [
    "unknown paths stay dockerd's 404",
    "GET",
    "/nope",
    (r) => assert.deepEqual([r.status, r.json()], [404, { message: "page not found" }]),
  ],
];

describe("what Docker clients probe answers as dockerd does, or fails with Arca's clear message", () => {
  let tmp: string;
  let socket: string;
  let daemon: DaemonProc;
  let stock: StockDockerd;

  before(async () => {
    tmp = await mkdtemp(path.join(os.tmpdir(), "arca-probes-"));
    socket = path.join(tmp, "arca.sock");
    const dockerd = await findDockerd();
    assert.ok(
      dockerd,
      "dockerd not found: run `bash scripts/setup-tools.sh` (it installs Debian's docker.io)",
    );
    stock = startStockDockerd(dockerd, path.join(tmp, "stock"));
    daemon = startDaemon(path.join(tmp, "data"), socket);
    await Promise.all([daemon.waitFor(/ready in/), stock.ready]);
  });

  after(async () => {
    await daemon?.stop();
    await stock?.stop();
    await rm(tmp, { recursive: true, force: true });
  });

  test("every route the clients call answers with the status and body listed", async () => {
    for (const [who, method, p, check, body] of CLIENT_ROUTES) {
      for (const prefix of ["", "/v1.51"]) {
        const r = await request(socket, method, `${prefix}${p}`, body);
        try {
          check(r);
        } catch (err) {
          throw new Error(
            `${who}: ${method} ${prefix}${p} → ${r.status} ${r.body}\n${(err as Error).message}`,
          );
        }
      }
    }
  });

  test("GET /info has every field a stock dockerd fills, of the same type; Swarm is inactive", async () => {
    const ours = (await request(socket, "GET", "/v1.41/info")).json() as Record<string, unknown>;
    const theirs = (await request(stock.socket, "GET", "/v1.41/info")).json() as Record<string, unknown>;
    const kind = (v: unknown) => (v === null ? "null" : Array.isArray(v) ? "array" : typeof v);
    for (const [key, value] of Object.entries(theirs)) {
      assert.ok(key in ours, `dockerd's /info has ${key}, Arca's has not`);
      // dockerd's nulls are "nothing to say" (Authorization plugins, Warnings): any type is fine.
      if (value !== null) assert.equal(kind(ours[key]), kind(value), `type of ${key}`);
    }
    for (const group of [
      "Swarm",
      "RegistryConfig",
      "Plugins",
      "ContainerdCommit",
      "RuncCommit",
      "InitCommit",
    ]) {
      assert.deepEqual(
        Object.keys(ours[group] as object).sort(),
        Object.keys(theirs[group] as object).sort(),
        `${group} fields`,
      );
    }
    assert.deepEqual(ours.Swarm, theirs.Swarm, "an engine that is no swarm member says so as dockerd does");
    assert.equal(ours.IndexServerAddress, "https://index.docker.io/v1/");
    // The docker CLI prints the Swarm block; a blank "Swarm:" was what it showed before.
    const env = { ...process.env, DOCKER_HOST: `unix://${socket}` };
    const info = await run(
      "docker",
      ["info", "--format", "{{.Swarm.LocalNodeState}} {{.Containers}} {{.ContainersRunning}}"],
      { env },
    );
    assert.equal(info.stdout.trim(), "inactive 0 0");
  });

  test("/containers/json and /info count the same containers: Arca's own sandbox in neither", async () => {
    const env = { ...process.env, DOCKER_HOST: `unix://${socket}` };
    // The sandbox container exists and runs ...
    const sandbox = (await request(socket, "GET", "/containers/arca-buildkit/json")).json() as {
      State: { Running: boolean };
    };
    assert.equal(sandbox.State.Running, true);
    // ... and neither listing nor counts show it.
    const ps = await run("docker", ["ps", "-a", "-q"], { env });
    assert.equal(ps.stdout.trim(), "");
    const info = (await request(socket, "GET", "/info")).json() as Record<string, number>;
    assert.deepEqual(
      [info.Containers, info.ContainersRunning, info.ContainersStopped, info.ContainersPaused],
      [0, 0, 0, 0],
    );
  });

  test("networks as dockerode, the docker CLI and testcontainers read them", async () => {
    const docker = new Docker({ socketPath: socket });
    const list = await docker.listNetworks();
    assert.deepEqual(list.map((n) => n.Name).sort(), ["bridge", "host", "none"]);
    const bridge = await docker.getNetwork("bridge").inspect();
    assert.equal(bridge.Driver, "bridge");
    assert.equal(bridge.Options?.["com.docker.network.bridge.default_bridge"], "true");
    assert.deepEqual(bridge.Containers, {});
    // By ID and ID prefix too, as dockerd finds networks.
    assert.equal((await docker.getNetwork(bridge.Id).inspect()).Name, "bridge");
    assert.equal((await docker.getNetwork(bridge.Id.slice(0, 12)).inspect()).Name, "bridge");
    const env = { ...process.env, DOCKER_HOST: `unix://${socket}` };
    const ls = await run("docker", ["network", "ls", "--format", "{{.Name}} {{.Driver}} {{.Scope}}"], {
      env,
    });
    assert.deepEqual(ls.stdout.trim().split("\n").sort(), [
      "bridge bridge local",
      "host host local",
      "none null local",
    ]);
    const gw = await run(
      "docker",
      ["network", "inspect", "bridge", "--format", "{{(index .IPAM.Config 0).Gateway}}"],
      { env },
    );
    assert.equal(gw.stdout.trim(), "172.17.0.1");
    // The same three names a stock dockerd with a bridge lists (the test's has none: --bridge=none).
    const stockNames = names((await request(stock.socket, "GET", "/networks")).json());
    assert.deepEqual(stockNames, ["host", "none"]);
    await assert.rejects(
      run("docker", ["network", "create", "n1"], { env }),
      /not supported by Arca \(build engine only\): creating networks/,
    );
  });

  test("hijacked attach (Upgrade: tcp) gets the 501 too, not a 404", async () => {
    const r = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = http.request({
        socketPath: socket,
        method: "POST",
        path: "/v1.51/containers/arca-buildkit/attach?stream=1&stdout=1",
        headers: { Connection: "Upgrade", Upgrade: "tcp" },
      });
      req.on("response", (res) => {
        let text = "";
        res.on("data", (c: Buffer) => {
          text += c.toString();
        });
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body: text }));
      });
      req.on("upgrade", () => reject(new Error("attach was upgraded")));
      req.on("error", reject);
      req.end();
    });
    assert.equal(r.status, 501);
    assert.deepEqual(JSON.parse(r.body), { message: `${BUILD_ONLY}attaching to containers` });
  });
});
