import assert from "node:assert/strict";
import { copyFile, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { seedBusybox } from "./support/busybox-rootfs.js";
import { type DaemonProc, startDaemon } from "./support/daemon.js";
import { type CliResult, dockerCli, dockerConfigWithBuildx } from "./support/docker-cli.js";
import {
  type HostileBehaviour,
  type HostileRegistry,
  startHostileRegistry,
} from "./support/hostile-registry.js";
import { tool } from "./support/tools.js";

/** The daemon's egress idle bound in this test (default 60 s): what ends a silent upstream. */
const IDLE_S = 5;

// FROM a hostile upstream registry (test/support/hostile-registry.ts), reached by buildkitd only
// through the daemon's egress proxy under a name from the policy's hosts map: every misbehaviour
// fails the build with a clear error in bounded time, stores nothing, and leaves the daemon serving.
describe("egress: FROM a hostile registry", { timeout: 900_000 }, () => {
  let tmp: string;
  let dataRoot: string;
  let socket: string;
  let daemon: DaemonProc;
  let reg: HostileRegistry;
  /** The same over plain HTTP (an insecure registry): buildkitd's requests take the proxy's forward path. */
  let plainReg: HostileRegistry;
  let env: NodeJS.ProcessEnv;
  let ctxCount = 0;
  const { cli, ok } = dockerCli(() => env);

  const context = async (dockerfile: string): Promise<string> => {
    const dir = path.join(tmp, `ctx-${++ctxCount}`);
    await mkdir(dir, { recursive: true });
    await writeFile(path.join(dir, "Dockerfile"), dockerfile);
    return dir;
  };
  const fromRepo = (repo: string, host = reg.host) =>
    context(`FROM ${host}/${repo}:1\nRUN cat /repo.txt && sha256sum /payload.bin\n`);
  const storeBlobs = async () => (await readdir(path.join(dataRoot, "images", "blobs", "sha256"))).sort();
  const images = async () =>
    (await ok(["images", "-a", "--no-trunc", "--format", "{{.ID}} {{.Repository}}:{{.Tag}}"])).stdout;
  const ping = () =>
    new Promise<string>((resolve, reject) => {
      http
        .get({ socketPath: socket, path: "/_ping" }, (res) => {
          let body = "";
          res.on("data", (d) => {
            body += d;
          });
          res.on("end", () => resolve(`${res.statusCode} ${body}`));
        })
        .on("error", reject);
    });
  const classic = (ctx: string) => cli(["build", "--no-cache", ctx], { DOCKER_BUILDKIT: "0" });
  const buildx = (ctx: string) => cli(["buildx", "build", "--progress=plain", "--no-cache", ctx]);
  const both = (r: CliResult) => `${r.stdout}\n${r.stderr}`;
  const re = (s: string) => new RegExp(s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"));

  before(async () => {
    tmp = await mkdtemp(path.join(os.tmpdir(), "arca-egress-hostile-"));
    dataRoot = path.join(tmp, "data");
    socket = path.join(tmp, "arca.sock");
    reg = await startHostileRegistry(path.join(tmp, "registry"));
    plainReg = await startHostileRegistry(path.join(tmp, "plain-registry"), {
      name: "hostile-plain.arca.test",
      plain: true,
    });
    await mkdir(dataRoot, { recursive: true });
    await writeFile(
      path.join(dataRoot, "egress.json"),
      JSON.stringify({
        mode: "audit",
        hosts: { "hostile.arca.test": "127.0.0.1", "hostile-plain.arca.test": "127.0.0.1" },
      }),
    );
    for (const hostPort of [reg.host, `hostile.arca.test:${reg.silentPort}`]) {
      await mkdir(path.join(dataRoot, "certs.d", hostPort), { recursive: true });
      await copyFile(reg.caFile as string, path.join(dataRoot, "certs.d", hostPort, "ca.crt"));
    }
    await seedBusybox(dataRoot, tmp);
    daemon = startDaemon(dataRoot, socket, [
      "--egress-idle-timeout",
      String(IDLE_S),
      "--insecure-registry",
      plainReg.host,
    ]);
    await daemon.waitFor(/ready in/);
    env = {
      ...process.env,
      DOCKER_HOST: `unix://${socket}`,
      DOCKER_CONFIG: await dockerConfigWithBuildx(path.join(tmp, "docker-config")),
      BUILDX_CONFIG: path.join(tmp, "buildx-config"),
      BUILDX_BUILDER: "",
    };
  });

  after(async () => {
    if (process.env.ARCA_TEST_DEBUG) console.log(daemon?.output());
    await daemon?.stop();
    await reg?.stop();
    await plainReg?.stop();
    await rm(tmp, { recursive: true, force: true });
  });

  test("the good repository on the same server builds, classic and buildx (so the cases below can fail)", async () => {
    const want = reg.images.good?.payloadSha256 as string;
    const ctx = await fromRepo("good");
    const c = await classic(ctx);
    assert.equal(c.code, 0, both(c));
    assert.match(c.stdout, new RegExp(`^good$[\\s\\S]*${want}  /payload\\.bin`, "m"));
    const b = await buildx(ctx);
    assert.equal(b.code, 0, both(b));
    assert.match(b.stderr, new RegExp(want));
    assert.ok(reg.requests.some((r) => r.repo === "good" && r.url.includes("/blobs/")));
  });

  const idleLine = (port: number) =>
    new RegExp(
      `egress: BuildKit's connection to hostile\\.arca\\.test:${port} failed: no byte either way for ${IDLE_S} s \\(the upstream never answered, or stalled\\)`,
    );

  interface Case {
    repo: HostileBehaviour | "silent";
    /** What the failed build says (classic output), and (buildx) its progress. */
    classic: () => RegExp[];
    buildx?: () => RegExp[];
    /** Upper bound on one build's wall time. */
    maxMs: number;
    /** Runs before the builds; check() after them. */
    before?: () => Promise<void>;
    check?: () => void | Promise<void>;
  }
  /** The daemon's peak resident memory since the last resetPeak() (VmHWM), in bytes. */
  const peakRss = async () =>
    Number(/VmHWM:\s+(\d+) kB/.exec(await readFile(`/proc/${daemon.proc.pid}/status`, "utf8"))?.[1]) * 1024;
  const resetPeak = () => writeFile(`/proc/${daemon.proc.pid}/clear_refs`, "5");
  let rssBefore = 0;
  const payload = (repo: string) => reg.images[repo]?.layers[1]?.digest as string;
  const cases: Case[] = [
    {
      repo: "bad-digest",
      classic: () => [re(`unexpected commit digest`), re(`expected ${payload("bad-digest")}`)],
      buildx: () => [re(`expected ${payload("bad-digest")}`)],
      maxMs: 60_000,
    },
    {
      repo: "huge-manifest",
      classic: () => [/rejecting 104857600 byte manifest for hostile\.arca\.test:\d+\/huge-manifest:1/],
      buildx: () => [/rejecting 104857600 byte manifest/],
      maxMs: 60_000,
    },
    {
      // No digest in HEAD: BuildKit GETs all 100 MB (streamed through the proxy) before refusing it.
      repo: "huge-manifest-get",
      classic: () => [/rejecting 104857600 byte manifest for hostile\.arca\.test:\d+\/huge-manifest-get:1/],
      buildx: () => [/rejecting 104857600 byte manifest/],
      maxMs: 60_000,
      before: async () => {
        await resetPeak();
        rssBefore = await peakRss();
      },
      check: async () => {
        // All 100 MB crossed the proxy (BuildKit read it to learn its digest), twice, relayed in bounded buffers.
        const got = reg.requests.filter((r) => r.repo === "huge-manifest-get" && r.method === "GET").length;
        assert.ok(got >= 2, `${got} GETs of the huge manifest`);
        const grew = (await peakRss()) - rssBefore;
        assert.ok(grew < 48 << 20, `the daemon's peak memory grew by ${grew >> 20} MiB`);
      },
    },
    {
      // containerd stops after 10 redirects, but reports the store mirror's 404 (asked first) instead.
      repo: "redirect-manifest",
      classic: () => [/hostile\.arca\.test:\d+\/redirect-manifest:1: not found/],
      buildx: () => [/redirect-manifest:1: not found/],
      maxMs: 60_000,
      check: () => {
        const hops = reg.requests.filter((r) => r.repo === "redirect-manifest").length;
        assert.ok(hops > 10 && hops < 200, `${hops} requests for the redirect loop`);
      },
    },
    {
      repo: "redirect-blob",
      classic: () => [re(`could not fetch content descriptor ${payload("redirect-blob")}`)],
      buildx: () => [re(`could not fetch content descriptor ${payload("redirect-blob")}`)],
      maxMs: 60_000,
      check: () => {
        const hops = reg.requests.filter((r) => r.repo === "redirect-blob" && r.url.includes("hop=")).length;
        assert.ok(hops >= 10 && hops < 200, `${hops} redirected requests`);
      },
    },
    {
      repo: "cut-blob",
      classic: () => [/unexpected EOF|short read/],
      buildx: () => [/unexpected EOF|short read/],
      maxMs: 120_000,
    },
    {
      repo: "never-manifest",
      classic: () => [idleLine(reg.port)],
      buildx: () => [idleLine(reg.port)],
      maxMs: 180_000,
    },
    {
      repo: "never-blob",
      classic: () => [idleLine(reg.port)],
      maxMs: 180_000,
    },
    {
      repo: "stall-blob",
      classic: () => [idleLine(reg.port)],
      buildx: () => [idleLine(reg.port)],
      maxMs: 180_000,
    },
    {
      // Accepts the connection, never sends a byte (not even the TLS handshake).
      repo: "silent",
      classic: () => [idleLine(reg.silentPort)],
      maxMs: 180_000,
    },
  ];

  for (const c of cases) {
    test(`${c.repo}: the build fails clearly in bounded time, nothing is stored, the daemon keeps serving`, async () => {
      const blobs = await storeBlobs();
      const imgs = await images();
      await c.before?.();
      const ctx =
        c.repo === "silent"
          ? await fromRepo("good", `hostile.arca.test:${reg.silentPort}`)
          : await fromRepo(c.repo);
      const runs: [string, (ctx: string) => Promise<CliResult>, RegExp[]][] = [
        ["classic", classic, c.classic()],
      ];
      if (c.buildx) runs.push(["buildx", buildx, c.buildx()]);
      for (const [name, run, patterns] of runs) {
        const t0 = Date.now();
        const r = await run(ctx);
        const ms = Date.now() - t0;
        assert.notEqual(r.code, 0, `${name}: ${both(r)}`);
        for (const p of patterns) assert.match(both(r), p, `${name}:\n${both(r)}`);
        assert.ok(ms < c.maxMs, `${name} took ${ms} ms`);
        const said = both(r)
          .split("\n")
          .filter((l) => /egress:|ERROR|error|failed|not found|rejecting/.test(l) && !/DEPRECATED/.test(l))
          .slice(-3)
          .join(" | ");
        console.log(`# ${c.repo} ${name}: failed in ${(ms / 1000).toFixed(1)} s: ${said}`);
      }
      await c.check?.();
      assert.deepEqual(await storeBlobs(), blobs, "no new blobs in the store");
      assert.equal(await images(), imgs, "docker images unchanged");
      assert.equal(await ping(), "200 OK");
    });
  }

  test("a blob cut once mid-way: BuildKit resumes it with a range request and the build succeeds", async () => {
    const r = await classic(await fromRepo("cut-blob-once"));
    assert.equal(r.code, 0, both(r));
    assert.match(r.stdout, new RegExp(`${reg.images["cut-blob-once"]?.payloadSha256}  /payload\\.bin`));
    const tries = reg.requests.filter(
      (q) => q.repo === "cut-blob-once" && q.url.includes(payload("cut-blob-once")) && q.method === "GET",
    );
    assert.ok(tries.length >= 2, `${tries.length} GETs of the cut blob`);
  });

  test("plain HTTP (an insecure registry): good builds; a never-answered manifest and a stalled blob end after the idle bound, named", async () => {
    const good = await classic(await fromRepo("good", plainReg.host));
    assert.equal(good.code, 0, both(good));
    assert.match(good.stdout, new RegExp(`${plainReg.images.good?.payloadSha256}  /payload\\.bin`));
    const blobs = await storeBlobs();
    const imgs = await images();
    const target = `hostile-plain\\.arca\\.test:${plainReg.port}`;
    for (const [repo, why] of [
      ["never-manifest", `sent no response within ${IDLE_S} s`],
      ["stall-blob", `sent no byte of the body for ${IDLE_S} s \\(stalled\\)`],
    ] as const) {
      const t0 = Date.now();
      const r = await classic(await fromRepo(repo, plainReg.host));
      const ms = Date.now() - t0;
      assert.notEqual(r.code, 0, both(r));
      assert.match(
        r.stdout,
        new RegExp(
          `egress: BuildKit's connection to ${target} failed: ${target} \\(127\\.0\\.0\\.1\\) ${why}`,
        ),
        both(r),
      );
      assert.ok(ms < 180_000, `${repo} took ${ms} ms`);
      console.log(`# plain ${repo} classic: failed in ${(ms / 1000).toFixed(1)} s`);
    }
    assert.deepEqual(await storeBlobs(), blobs, "no new blobs in the store");
    assert.equal(await images(), imgs, "docker images unchanged by the failures");
    assert.equal(await ping(), "200 OK");
  });

  test("buildx progress ends with the egress summary and the build's denials, as classic output does", async () => {
    const dir = await context(
      [
        "FROM busybox:local",
        "COPY probe /probe",
        "RUN /probe get http://169.254.169.254/latest/meta-data/ || true",
        "",
      ].join("\n"),
    );
    await copyFile(tool("arca-net-probe"), path.join(dir, "probe"));
    const summary = /egress: 1 request to 1 host, 1 denied \(arca egress log --build build-[0-9a-f-]+\)/;
    const denial = /egress denied: GET 169\.254\.169\.254:80 \(rule: [^)]*link-local/;
    const b = await buildx(dir);
    assert.equal(b.code, 0, both(b));
    assert.match(b.stderr, new RegExp(`#\\d+ ${summary.source}`));
    assert.match(b.stderr, new RegExp(`#\\d+ [\\d.]+ ${denial.source}`));
    const c = await classic(dir);
    assert.equal(c.code, 0, both(c));
    assert.match(c.stdout, summary);
    assert.match(c.stdout, denial);
  });

  test("afterwards a normal build and the good repository still work", async () => {
    const ctx = await context("FROM busybox:local\nRUN echo still-serving\n");
    const r = await classic(ctx);
    assert.equal(r.code, 0, both(r));
    assert.match(r.stdout, /still-serving/);
    const good = await buildx(await fromRepo("good"));
    assert.equal(good.code, 0, both(good));
    assert.equal(await ping(), "200 OK");
  });
});
