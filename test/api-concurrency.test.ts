import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import { Readable } from "node:stream";
import { after, before, describe, test } from "node:test";
import { promisify } from "node:util";
import Docker from "dockerode";
import tar from "tar-stream";
import { seedBusybox } from "./support/busybox-rootfs.js";
import { type DaemonProc, startDaemon } from "./support/daemon.js";

const run = promisify(execFile);

/** A tar (in memory: test contexts are tiny) of name → content. */
async function tarOf(entries: [string, string][]): Promise<Buffer> {
  const pack = tar.pack();
  for (const [name, body] of entries) pack.entry({ name, mode: 0o644 }, body);
  pack.finalize();
  const chunks: Buffer[] = [];
  for await (const c of pack) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

/** POST /build on a connection of its own; `abort()` destroys that socket. */
function startBuild(socket: string, query: string, body: Buffer) {
  let body$ = "";
  const req = http.request({
    socketPath: socket,
    method: "POST",
    path: `/build?${query}`,
    agent: false,
    headers: { "Content-Type": "application/x-tar" },
  });
  const done = new Promise<{ status: number; body: string }>((resolve, reject) => {
    req.on("response", (res) => {
      res.setEncoding("utf8");
      res.on("data", (c: string) => {
        body$ += c;
      });
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body: body$ }));
      res.on("error", reject);
    });
    req.on("error", reject);
  });
  req.end(body);
  return { done, abort: () => req.destroy() };
}

async function poll<T>(fn: () => Promise<T | undefined>, timeoutMs: number, what: string): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Whether a process whose command line contains `marker` runs (the RUN's `/bin/sh -c …`). */
async function running(marker: string): Promise<boolean> {
  const r = await run("ps", ["-eo", "args"], { maxBuffer: 16 << 20 });
  return r.stdout.split("\n").some((l) => l.includes(marker));
}

describe("concurrent builds against a real daemon", () => {
  let tmp: string;
  let dataRoot: string;
  let socket: string;
  let daemon: DaemonProc;

  before(async () => {
    tmp = await mkdtemp(path.join(os.tmpdir(), "arca-api-conc-"));
    dataRoot = path.join(tmp, "data");
    socket = path.join(tmp, "arca.sock");
    await seedBusybox(dataRoot, tmp);
    daemon = startDaemon(dataRoot, socket);
    await daemon.waitFor(/ready in/);
  });

  after(async () => {
    if (process.env.ARCA_TEST_DEBUG) console.log(daemon?.output());
    await daemon?.stop();
    await rm(tmp, { recursive: true, force: true });
  });

  test("eight clients build eight different contexts at once; each tag gets its own image", async () => {
    const n = 8;
    const ids = await Promise.all(
      Array.from({ length: n }, async (_, i) => {
        // A client of its own: its own dockerode, its own agent, so its own connection.
        const docker = new Docker({ socketPath: socket, agent: new http.Agent() } as Docker.DockerOptions);
        const context = await tarOf([
          [
            "Dockerfile",
            `FROM busybox:local\nCOPY n.txt /n.txt\nRUN cat /n.txt > /copy && grep -qx ${i} /copy\n`,
          ],
          ["n.txt", `${i}\n`],
        ]);
        const stream = await docker.buildImage(Readable.from([context]), {
          t: `conc:${i}`,
          labels: { n: String(i) },
          version: "1",
        });
        const events = await new Promise<Record<string, unknown>[]>((resolve, reject) =>
          docker.modem.followProgress(stream, (err: Error | null, res: Record<string, unknown>[]) =>
            err ? reject(err) : resolve(res),
          ),
        );
        assert.deepEqual(
          events.filter((e) => e.error),
          [],
          `build ${i}`,
        );
        assert.ok(
          events.some((e) => e.stream === `Successfully tagged conc:${i}\n`),
          `build ${i}: ${JSON.stringify(events)}`,
        );
        const inspect = await docker.getImage(`conc:${i}`).inspect();
        assert.equal(inspect.Config.Labels?.n, String(i));
        return inspect.Id;
      }),
    );
    assert.equal(new Set(ids).size, n, ids.join("\n"));

    // Each image's filesystem holds its own number: one build reads /copy out of all eight.
    const stages = ids.map((_, i) => `COPY --from=conc:${i} /copy /c${i}`).join("\n");
    const checks = ids.map((_, i) => `grep -qx ${i} /c${i}`).join(" && ");
    const verify = await startBuild(
      socket,
      "t=conc:check",
      await tarOf([["Dockerfile", `FROM busybox:local\n${stages}\nRUN ${checks}\n`]]),
    ).done;
    assert.equal(verify.status, 200);
    assert.doesNotMatch(verify.body, /errorDetail/);
    assert.match(verify.body, /Successfully tagged conc:check/);
  });

  test("a client that disconnects mid-build cancels only its own build", async () => {
    const tag = `${process.pid}-${Date.now()}`;
    // Distinct command lines, so `ps` tells the two RUNs apart (and from other daemons' builds).
    const doomed = `sleep 31 && echo doomed-${tag}`;
    const survivor = `sleep 8 && echo survivor-${tag}`;
    const a = startBuild(
      socket,
      "t=conc:doomed&nocache=1",
      await tarOf([["Dockerfile", `FROM busybox:local\nRUN ${doomed}\n`]]),
    );
    const b = startBuild(
      socket,
      "t=conc:survivor&nocache=1",
      await tarOf([["Dockerfile", `FROM busybox:local\nRUN ${survivor}\n`]]),
    );
    a.done.catch(() => {}); // rejects with the socket we destroy
    await poll(
      async () => ((await running(doomed)) && (await running(survivor)) ? true : undefined),
      20_000,
      "both RUNs",
    );

    a.abort();
    await poll(async () => ((await running(doomed)) ? undefined : true), 5_000, "the aborted RUN to end");
    assert.ok(await running(survivor), "the other build's RUN still runs");

    const r = await b.done;
    assert.equal(r.status, 200);
    assert.doesNotMatch(r.body, /errorDetail/);
    // The RUN's own output line (the Step line also names the marker, but not alone in a stream).
    assert.ok(r.body.includes(JSON.stringify({ stream: `survivor-${tag}\n` })), r.body);
    assert.match(r.body, /Successfully tagged conc:survivor/);

    const docker = new Docker({ socketPath: socket });
    await docker.getImage("conc:survivor").inspect();
    await assert.rejects(docker.getImage("conc:doomed").inspect(), { statusCode: 404 });
  });
});
