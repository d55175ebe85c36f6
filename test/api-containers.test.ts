import assert from "node:assert/strict";
import { execFile, spawn } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { promisify } from "node:util";
import Docker from "dockerode";
import { type DaemonProc, startDaemon } from "./support/daemon.js";

const run = promisify(execFile);

function request(
  socket: string,
  method: string,
  urlPath: string,
  body?: unknown,
): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const data = body === undefined ? undefined : JSON.stringify(body);
    const req = http.request(
      {
        socketPath: socket,
        method,
        path: urlPath,
        headers: data
          ? { "Content-Type": "application/json", "Content-Length": Buffer.byteLength(data) }
          : {},
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () =>
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }),
        );
      },
    );
    req.on("error", reject);
    req.end(data);
  });
}

/** Splits a multiplexed stream into its frames, checking each header's zero bytes. */
function demux(buf: Buffer): { stream: number; text: string }[] {
  const out: { stream: number; text: string }[] = [];
  let i = 0;
  while (i < buf.length) {
    assert.ok(i + 8 <= buf.length, "truncated frame header");
    assert.deepEqual([...buf.subarray(i + 1, i + 4)], [0, 0, 0]);
    const len = buf.readUInt32BE(i + 4);
    out.push({ stream: buf[i] as number, text: buf.subarray(i + 8, i + 8 + len).toString() });
    i += 8 + len;
  }
  return out;
}

/** Runs a command with `input` on its stdin. */
function runWithInput(
  cmd: string,
  args: string[],
  input: string,
  env: NodeJS.ProcessEnv,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, args, { env, stdio: ["pipe", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    p.stdout.on("data", (d: Buffer) => {
      stdout += d.toString();
    });
    p.stderr.on("data", (d: Buffer) => {
      stderr += d.toString();
    });
    p.on("error", reject);
    p.on("close", (code) => resolve({ code, stdout, stderr }));
    p.stdin.end(input);
  });
}

describe("internal containers, exec, logs and volumes through the Engine API", () => {
  let tmp: string;
  let socket: string;
  let daemon: DaemonProc;
  let env: NodeJS.ProcessEnv;
  const docker = (...args: string[]) => run("docker", args, { env, timeout: 15_000 });

  before(async () => {
    tmp = await mkdtemp(path.join(os.tmpdir(), "arca-api-ct-"));
    socket = path.join(tmp, "arca.sock");
    env = { ...process.env, DOCKER_HOST: `unix://${socket}` };
    daemon = startDaemon(path.join(tmp, "data"), socket);
    await daemon.waitFor(/ready in/);
  });

  after(async () => {
    await daemon?.stop();
    await rm(tmp, { recursive: true, force: true });
  });

  test("docker ps -a lists nothing: internal containers are hidden", async () => {
    const { stdout } = await docker("ps", "-a", "--no-trunc");
    assert.deepEqual(stdout.trim().split("\n"), [stdout.trim().split("\n")[0]]);
    assert.match(stdout, /^CONTAINER ID\s+IMAGE/);
    for (const q of ["all=1", "all=1&filters=%7B%22name%22%3A%5B%22arca%22%5D%7D", "limit=5"]) {
      const r = await request(socket, "GET", `/v1.51/containers/json?${q}`);
      assert.equal(r.status, 200);
      assert.deepEqual(JSON.parse(r.body.toString()), []);
    }
    const bad = await request(socket, "GET", "/containers/json?filters=%7B%22bogus%22%3A%5B%22x%22%5D%7D");
    assert.equal(bad.status, 400);
    assert.deepEqual(JSON.parse(bad.body.toString()), { message: "invalid filter 'bogus'" });
  });

  test("docker inspect arca-buildkit shows network none, restart always, labels and the cache volume", async () => {
    const [c] = JSON.parse((await docker("inspect", "arca-buildkit")).stdout);
    assert.equal(c.Name, "/arca-buildkit");
    assert.match(c.Id, /^[0-9a-f]{64}$/);
    assert.equal(c.State.Running, true);
    assert.equal(c.State.Status, "running");
    assert.equal(c.HostConfig.NetworkMode, "none");
    assert.deepEqual(c.HostConfig.RestartPolicy, { Name: "always", MaximumRetryCount: 0 });
    assert.equal(c.Config.Labels["com.arca.internal"], "true");
    assert.equal(c.Config.Labels["com.arca.role"], "buildkit");
    const cache = c.Mounts.find((m: { Name?: string }) => m.Name === "buildkit-cache");
    assert.equal(cache.Type, "volume");
    assert.equal(cache.Destination, "/var/lib/buildkit");
    assert.equal(cache.Driver, "local");
    assert.equal(cache.Source, path.join(tmp, "data", "volumes", "buildkit-cache", "_data"));
    assert.ok(c.HostConfig.Binds.includes("buildkit-cache:/var/lib/buildkit"));
    assert.equal(c.Platform, "linux");
    assert.ok(c.NetworkSettings.Networks.none, "the none network is listed");
    assert.equal(c.NetworkSettings.IPAddress, "");
    assert.ok(c.GraphDriver.Data.MergedDir);
    assert.match(c.Image, /^sha256:[0-9a-f]{64}$/);

    const fmt = await docker(
      "inspect",
      "-f",
      "{{.HostConfig.NetworkMode}} {{.HostConfig.RestartPolicy.Name}}",
      c.Id,
    );
    assert.equal(fmt.stdout.trim(), "none always");
    // By ID prefix too, and through dockerode.
    const byPrefix = await request(socket, "GET", `/containers/${c.Id.slice(0, 12)}/json`);
    assert.equal(byPrefix.status, 200);
    assert.equal(JSON.parse(byPrefix.body.toString()).Id, c.Id);
    const viaDockerode = await new Docker({ socketPath: socket }).getContainer("arca-buildkit").inspect();
    assert.equal(viaDockerode.Id, c.Id);
    assert.equal(viaDockerode.HostConfig.NetworkMode, "none");
  });

  test("docker logs: the whole log, --tail with timestamps, and -f that keeps following", async () => {
    await daemon.waitFor(/ready in/);
    const all = await docker("logs", "arca-buildkit");
    assert.match(all.stdout + all.stderr, /running server/);

    const tail = await docker("logs", "--tail", "5", "-t", "arca-buildkit");
    const lines = (tail.stdout + tail.stderr).trim().split("\n");
    assert.ok(lines.length >= 1 && lines.length <= 5, `${lines.length} lines`);
    for (const l of lines) assert.match(l, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z /);

    const follow = spawn("docker", ["logs", "-f", "--tail", "2", "arca-buildkit"], { env });
    let out = "";
    follow.stdout.on("data", (d: Buffer) => {
      out += d.toString();
    });
    follow.stderr.on("data", (d: Buffer) => {
      out += d.toString();
    });
    const exited = new Promise<number | null>((resolve) => follow.once("exit", (code) => resolve(code)));
    await new Promise((r) => setTimeout(r, 1500));
    assert.equal(follow.exitCode, null, "still following");
    assert.match(out, /running server/);
    follow.kill("SIGTERM");
    await exited;

    // The raw API: multiplexed frames, stderr only when asked.
    const r = await request(socket, "GET", "/v1.51/containers/arca-buildkit/logs?stderr=1&tail=3");
    assert.equal(r.status, 200);
    assert.equal(r.headers["content-type"], "application/vnd.docker.multiplexed-stream");
    const frames = demux(r.body);
    assert.ok(frames.length > 0 && frames.length <= 3);
    assert.ok(frames.every((f) => f.stream === 2));
    const none = await request(socket, "GET", "/containers/arca-buildkit/logs");
    assert.equal(none.status, 400);
    assert.match(JSON.parse(none.body.toString()).message, /at least one stream/);
  });

  test("docker exec: ps aux sees buildkitd and arca-proxy, exit codes, stdin", async () => {
    const ps = await docker("exec", "arca-buildkit", "ps", "aux");
    assert.match(ps.stdout, /buildkitd/);
    assert.match(ps.stdout, /arca-proxy/);

    await assert.rejects(
      docker("exec", "arca-buildkit", "sh", "-c", "echo oops >&2; exit 3"),
      (err: unknown) => {
        const e = err as { code: number; stderr: string };
        assert.equal(e.code, 3);
        assert.match(e.stderr, /oops/);
        return true;
      },
    );

    const cat = await runWithInput("docker", ["exec", "-i", "arca-buildkit", "cat"], "hi\n", env);
    assert.equal(cat.code, 0, cat.stderr);
    assert.equal(cat.stdout, "hi\n");

    const wd = await docker(
      "exec",
      "-w",
      "/etc",
      "-e",
      "FOO=bar",
      "arca-buildkit",
      "sh",
      "-c",
      'echo "$PWD $FOO"',
    );
    assert.equal(wd.stdout, "/etc bar\n");
  });

  test("exec through dockerode: plain start, inspect, detach, and a second start is refused", async () => {
    const c = new Docker({ socketPath: socket }).getContainer("arca-buildkit");
    const ex = await c.exec({
      Cmd: ["sh", "-c", "echo out; echo err >&2; exit 5"],
      AttachStdout: true,
      AttachStderr: true,
    });
    const stream = await ex.start({ hijack: false });
    const chunks: Buffer[] = [];
    stream.on("data", (b: Buffer) => chunks.push(b));
    await new Promise((r) => stream.on("end", r));
    const frames = demux(Buffer.concat(chunks));
    assert.deepEqual(
      frames.filter((f) => f.stream === 1).map((f) => f.text),
      ["out\n"],
    );
    assert.deepEqual(
      frames.filter((f) => f.stream === 2).map((f) => f.text),
      ["err\n"],
    );
    const info = await ex.inspect();
    assert.equal(info.Running, false);
    assert.equal(info.ExitCode, 5);
    assert.equal(info.ProcessConfig.entrypoint, "sh");
    assert.equal(info.ContainerID, (await c.inspect()).Id);

    const detached = await c.exec({ Cmd: ["sleep", "1"] });
    await detached.start({ Detach: true });
    assert.equal((await detached.inspect()).Running, true);
    assert.ok((await c.inspect()).ExecIDs?.includes(detached.id));
    await assert.rejects(
      detached.start({ Detach: true }),
      (err: { statusCode?: number }) => err.statusCode === 409,
    );
  });

  test("exec with a TTY: a real terminal, its initial size, resize, stdin and the exit code", async () => {
    const c = new Docker({ socketPath: socket }).getContainer("arca-buildkit");
    const ex = await c.exec({
      Cmd: ["sh", "-c", 'tty; stty size; read x; stty size; echo "got:$x"; exit 4'],
      AttachStdin: true,
      AttachStdout: true,
      AttachStderr: true,
      Tty: true,
      ConsoleSize: [30, 100],
    });
    const stream = await ex.start({ hijack: true, stdin: true, Tty: true });
    let out = "";
    stream.on("data", (b: Buffer) => {
      out += b.toString();
    });
    const ended = new Promise((r) => stream.on("end", r));
    const until = async (re: RegExp) => {
      for (let i = 0; i < 100 && !re.test(out); i++) await new Promise((r) => setTimeout(r, 100));
      assert.match(out, re);
    };
    await until(/30 100\r?\n/);
    const resized = await request(socket, "POST", `/exec/${ex.id}/resize?h=40&w=120`);
    assert.equal(resized.status, 200);
    stream.write("hello\n");
    await ended;
    // Raw output (no multiplexing headers), from a pty (CRLF line ends).
    assert.match(out, /^\/dev\/pts\/\d+\r\n30 100\r\n/);
    assert.match(out, /40 120\r\ngot:hello\r\n/);
    assert.equal((await ex.inspect()).ExitCode, 4);

    // The docker CLI's `exec -it`, given a terminal by script(1).
    const cli = await run(
      "script",
      ["-qec", "docker exec -it arca-buildkit sh -c 'tty; exit 3'", "/dev/null"],
      {
        env,
        timeout: 15_000,
      },
    ).then(
      () => ({ code: 0, stdout: "" }),
      (e: { code: number; stdout: string }) => e,
    );
    assert.equal(cli.code, 3);
    assert.match(cli.stdout, /\/dev\/pts\/\d+/);
  });

  test("volumes: docker volume ls and inspect show buildkit-cache", async () => {
    const ls = await docker("volume", "ls", "--format", "{{.Driver}} {{.Name}}");
    assert.equal(ls.stdout.trim(), "local buildkit-cache");
    const [v] = JSON.parse((await docker("volume", "inspect", "buildkit-cache")).stdout);
    assert.equal(v.Name, "buildkit-cache");
    assert.equal(v.Driver, "local");
    assert.equal(v.Scope, "local");
    assert.equal(v.Mountpoint, path.join(tmp, "data", "volumes", "buildkit-cache", "_data"));
    assert.match(v.CreatedAt, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
    const r = await request(socket, "GET", "/volumes");
    const body = JSON.parse(r.body.toString());
    assert.deepEqual(body.Warnings, []);
    assert.deepEqual(
      body.Volumes.map((x: { Name: string }) => x.Name),
      ["buildkit-cache"],
    );
    await assert.rejects(docker("volume", "rm", "buildkit-cache"), /volume is in use/);
  });

  test("errors have dockerd's status and message", async () => {
    const cases: [string, string, number, RegExp][] = [
      ["GET", "/containers/nope/json", 404, /^No such container: nope$/],
      ["GET", "/containers/nope/logs?stdout=1", 404, /^No such container: nope$/],
      ["POST", "/containers/nope/exec", 404, /^No such container: nope$/],
      ["GET", "/exec/nope/json", 404, /^No such exec instance: nope$/],
      ["POST", "/exec/nope/resize?h=1&w=1", 404, /^No such exec instance: nope$/],
      ["GET", "/volumes/nope", 404, /^get nope: no such volume$/],
      ["DELETE", "/containers/arca-buildkit", 409, /managed by Arca/],
      [
        "POST",
        "/containers/create",
        501,
        /^not supported by Arca \(build engine only\): creating containers$/,
      ],
      ["POST", "/containers/arca-buildkit/kill?signal=BOGUS", 400, /Invalid signal: BOGUS/],
    ];
    for (const [method, p, status, message] of cases) {
      const r = await request(
        socket,
        method,
        `/v1.51${p}`,
        method === "POST" ? { Cmd: ["true"] } : undefined,
      );
      assert.equal(r.status, status, `${method} ${p}`);
      assert.match(JSON.parse(r.body.toString()).message, message, `${method} ${p}`);
    }
    const empty = await request(socket, "POST", "/containers/arca-buildkit/exec", { Cmd: [] });
    assert.equal(empty.status, 400);
    assert.deepEqual(JSON.parse(empty.body.toString()), { message: "No exec command specified" });
    // Starting a running container is "not modified", as with dockerd.
    assert.equal((await request(socket, "POST", "/containers/arca-buildkit/start")).status, 304);
    await assert.rejects(docker("exec", "nope", "true"), /No such container: nope/);
    await assert.rejects(docker("rm", "-f", "arca-buildkit"), /managed by Arca/);
  });
});
