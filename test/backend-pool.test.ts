import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { setTimeout as delay } from "node:timers/promises";
import { promisify } from "node:util";
import { createControlClient } from "../src/buildkit/index.js";
import { parseDialAddress } from "../src/transport/index.js";
import { type Buildkitd, freePort, startBuildkitd } from "./support/buildkitd.js";
import { seedBusybox } from "./support/busybox-rootfs.js";
import { type DaemonProc, startDaemon } from "./support/daemon.js";
import { dockerCli, dockerConfigWithBuildx } from "./support/docker-cli.js";
import { type MtlsFiles, makeMtls } from "./support/mtls.js";
import { poll } from "./support/poll.js";

const run = promisify(execFile);
const repo = path.resolve(import.meta.dirname, "..");

interface BuildEvent {
  Action: string;
  Actor: { ID: string; Attributes: Record<string, string> };
}

// One daemon in front of three real backends: its built-in sandbox, a second local sandbox
// (arca-buildkit-b2) and a plain buildkitd the test starts on tcp://127.0.0.1 with mutual TLS,
// which pulls bases from and pushes results to the daemon's registry endpoint over mutual TLS.
describe("backend pool: three BuildKit backends behind one daemon", { timeout: 1_200_000 }, () => {
  let tmp: string;
  let root: string;
  let env: NodeJS.ProcessEnv;
  let daemon: DaemonProc;
  let remote: Buildkitd;
  let bk: MtlsFiles;
  let reg: MtlsFiles;
  let registryPort: number;
  const { cli, ok } = dockerCli(() => env);

  const arca = async (args: string[]) => {
    try {
      const r = await run(
        process.execPath,
        ["--import", "tsx", path.join(repo, "src/cli/run.ts"), ...args, "--data-root", root],
        { cwd: repo },
      );
      return { code: 0, stdout: r.stdout, stderr: r.stderr };
    } catch (err) {
      const e = err as { code?: number; stdout?: string; stderr?: string };
      return { code: e.code ?? 1, stdout: e.stdout ?? "", stderr: e.stderr ?? "" };
    }
  };
  const backends = async () =>
    JSON.parse((await arca(["backend", "ls", "--json"])).stdout) as {
      name: string;
      state: string;
      running: number;
      done: number;
    }[];
  const waitState = (name: string, state: string, timeoutMs = 120_000) =>
    poll(
      async () => ((await backends()).find((b) => b.name === name)?.state === state ? true : undefined),
      timeoutMs,
      `${name} ${state}`,
    );
  /** The pool's routing events since `since` (docker events, as a user would read them). */
  const builderEvents = async (since: number): Promise<BuildEvent[]> => {
    const r = await ok([
      "events",
      "--since",
      String(since),
      "--until",
      String(Math.ceil(Date.now() / 1000) + 1),
      "--filter",
      "type=builder",
      "--format",
      "{{json .}}",
    ]);
    return r.stdout
      .split("\n")
      .filter(Boolean)
      .map((l) => JSON.parse(l) as BuildEvent);
  };
  const project = async (name: string, extra = ""): Promise<string> => {
    const dir = path.join(tmp, name);
    await mkdir(dir, { recursive: true });
    // The stamp differs on every run: a build that reuses the cache gives the same image ID.
    await writeFile(
      path.join(dir, "Dockerfile"),
      `FROM busybox:local\nRUN echo ${name} $(date +%s%N) > /stamp\n${extra}`,
    );
    return dir;
  };
  /** A project (built once) that the pool routes to `backend`, found from its placement events. */
  const projectOn = async (backend: string, prefix: string): Promise<{ dir: string; tag: string }> => {
    for (let i = 0; i < 16; i++) {
      const t0 = Math.floor(Date.now() / 1000);
      const dir = await project(`${prefix}-${i}`);
      const tag = `${prefix}-${i}:1`;
      await ok(["build", "-t", tag, dir], { DOCKER_BUILDKIT: "0" });
      const e = (await builderEvents(t0)).find(
        (x) => x.Action === "build" && x.Actor.Attributes.names === tag,
      );
      if (e?.Actor.ID === backend) return { dir, tag };
    }
    throw new Error(`no project routed to ${backend}: ${JSON.stringify(await backends())}`);
  };
  const classic = (tag: string, dir: string, round: number) =>
    cli(["build", "--build-arg", `ROUND=${round}`, "-t", tag, dir], { DOCKER_BUILDKIT: "0" });
  const imageId = async (ref: string) =>
    (await ok(["image", "inspect", "--format", "{{.Id}}", ref])).stdout.trim();
  const controlOf = (name: string) => {
    if (name === "remote")
      return createControlClient(
        parseDialAddress(remote.addr, { tls: { ca: bk.ca, cert: bk.clientCert, key: bk.clientKey } }),
      );
    const dir = name === "default" ? "sandbox" : `sandbox-${name}`;
    return createControlClient(parseDialAddress(`unix://${path.join(root, "run", dir, "buildkitd.sock")}`));
  };

  before(async () => {
    tmp = await mkdtemp(path.join(os.tmpdir(), "arca-pool-"));
    root = path.join(tmp, "root");
    await mkdir(root, { recursive: true });
    bk = await makeMtls(tmp, "buildkitd");
    reg = await makeMtls(tmp, "registry");
    registryPort = await freePort();
    const bkPort = await freePort();
    remote = await startBuildkitd({
      registryPort,
      tcp: { port: bkPort, cert: bk.serverCert, key: bk.serverKey, ca: bk.ca },
      registryTls: { ca: reg.ca, cert: reg.clientCert, key: reg.clientKey },
    });
    await seedBusybox(root, tmp);
    // Room for every build of a round at once: these tests are about placement, not spilling.
    await writeFile(
      path.join(root, "backends.json"),
      JSON.stringify({ backends: [{ name: "default", address: "sandbox", max: 8 }] }),
    );
    daemon = startDaemon(root, path.join(root, "arca.sock"), [
      "--backend",
      "b2=sandbox,max=8",
      "--backend",
      `remote=${remote.addr},ca=${bk.ca},cert=${bk.clientCert},key=${bk.clientKey},registry=127.0.0.1:${registryPort},max=8`,
      "--registry-listen",
      `tcp://127.0.0.1:${registryPort}`,
      "--registry-tlscert",
      reg.serverCert,
      "--registry-tlskey",
      reg.serverKey,
      "--registry-tlscacert",
      reg.ca,
    ]);
    await daemon.waitFor(/arca: ready in/, 300_000);
    env = {
      ...process.env,
      DOCKER_HOST: `unix://${path.join(root, "arca.sock")}`,
      DOCKER_CONFIG: await dockerConfigWithBuildx(path.join(tmp, "docker-config")),
      BUILDX_CONFIG: path.join(tmp, "buildx-config"),
      BUILDX_BUILDER: "",
    };
    for (const b of ["default", "b2", "remote"]) await waitState(b, "up", 300_000);
  });

  after(async () => {
    if (process.env.ARCA_TEST_DEBUG) console.log(daemon?.output());
    await daemon?.stop();
    await remote?.stop();
    await rm(tmp, { recursive: true, force: true });
  });

  test("mutual TLS: the remote buildkitd and the registry listener refuse a client without a certificate", async () => {
    const withCert = controlOf("remote");
    try {
      assert.ok((await withCert.control.listWorkers({})).record.length > 0, "with a client certificate");
    } finally {
      withCert.close();
    }
    const anon = createControlClient(parseDialAddress(remote.addr, { tls: { ca: bk.ca } }));
    try {
      await assert.rejects(anon.control.listWorkers({}, { signal: AbortSignal.timeout(10_000) }));
    } finally {
      anon.close();
    }
    const url = `https://127.0.0.1:${registryPort}/v2/`;
    /** The HTTP status curl gets from the listener, with the given client certificate options. */
    const status = (certArgs: string[]) =>
      run("curl", [
        "-sS",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "--cacert",
        reg.ca,
        ...certArgs,
        url,
      ]).then(
        (r) => r.stdout,
        () => "refused",
      );
    assert.equal(await status(["--cert", reg.clientCert, "--key", reg.clientKey]), "200");
    assert.equal(await status([]), "refused", "refused without a client certificate");
    const info = await ok(["info"]);
    assert.match(
      info.stdout,
      /backend remote lacks: RUN steps and base-image pulls bypass the egress policy/,
    );
    assert.match(info.stdout, /backend b2: sandbox \(sandbox\), up, \d+ running/);
  });

  test("twelve builds of four projects: each project stays on its first backend and is fully cached there", async () => {
    const names = ["alpha", "bravo", "charlie", "delta"];
    const dirs = await Promise.all(names.map((n) => project(n, "RUN sleep 1\n")));
    const t0 = Math.floor(Date.now() / 1000);
    // Round 1: the four first builds at once; rounds 2 and 3: the eight repeats at once.
    const first = await Promise.all(names.map((n, i) => classic(`${n}:1`, dirs[i] as string, 1)));
    for (const r of first) assert.equal(r.code, 0, r.stderr);
    const repeats = await Promise.all(
      [2, 3].flatMap((round) =>
        names.map((n, i) => classic(`${n}:1`, dirs[i] as string, round).then((r) => ({ r, n }))),
      ),
    );
    const builtId = (out: string) => /Successfully built ([0-9a-f]{12})/.exec(out)?.[1];
    for (const { r, n } of repeats) {
      assert.equal(r.code, 0, r.stderr);
      // The stamp step ran again only if its cache was missed: the same image ID proves it was not.
      const i = names.indexOf(n);
      assert.equal(builtId(r.stdout), builtId(first[i]?.stdout ?? ""), `${n} rebuilt:\n${r.stdout}`);
    }
    assert.ok(repeats.some(({ r }) => (r.stdout.match(/Using cache/g) ?? []).length === 2));
    const placed = new Map<string, string[]>();
    for (const e of await builderEvents(t0)) {
      if (e.Action !== "build") continue;
      const name = (e.Actor.Attributes.names ?? "").split(":")[0] as string;
      placed.set(name, [...(placed.get(name) ?? []), e.Actor.ID]);
    }
    for (const n of names) {
      const where = placed.get(n) ?? [];
      assert.equal(where.length, 3, `${n} reached a backend three times: ${where}`);
      assert.equal(new Set(where).size, 1, `${n} stayed on one backend: ${where}`);
    }
    const used = new Set([...placed.values()].map((w) => w[0]));
    assert.ok(used.size >= 2, `the projects spread over backends: ${[...used]}`);
    // Each project's image is the same image all three times: nothing was rebuilt.
    const ids = await Promise.all(names.map((n) => imageId(`${n}:1`)));
    assert.equal(new Set(ids).size, 4);
    const ls = await backends();
    assert.equal(ls.reduce((s, b) => s + b.done, 0) >= 12, true, JSON.stringify(ls));
  });

  test("docker buildx build --load routes by its session's key and lands in the store", async () => {
    const dir = await project("buildx-proj");
    const t0 = Math.floor(Date.now() / 1000);
    await ok(["buildx", "build", "--load", "-t", "bx:1", dir]);
    const id1 = await imageId("bx:1");
    const second = await ok(["buildx", "build", "--load", "--progress", "plain", "-t", "bx:1", dir]);
    assert.match(second.stderr, /CACHED/);
    assert.equal(await imageId("bx:1"), id1, "the second buildx build reused the first's cache");
    // buildx also runs a small solve with a session of no key (no context): only the builds count.
    const sessions = (await builderEvents(t0)).filter(
      (e) => e.Action === "build" && e.Actor.Attributes.context,
    );
    assert.equal(sessions.length, 2, JSON.stringify(sessions));
    // A session's id works as a password to it: events name keys by digest only.
    for (const e of sessions) assert.match(e.Actor.Attributes.key ?? "", /^[0-9a-f]{16}$/);
    assert.equal(sessions[0]?.Actor.ID, sessions[1]?.Actor.ID, "both sessions on one backend");
  });

  test("kill -9 of the remote buildkitd mid-build: that build fails naming it, builds go elsewhere, it rejoins", async () => {
    // Find a project the remote backend takes, from the pool's own placement events.
    const { dir, tag } = await projectOn("remote", "probe");
    await writeFile(path.join(dir, "Dockerfile"), "FROM busybox:local\nRUN echo started && sleep 120\n");
    const t0 = Math.floor(Date.now() / 1000);
    const long = classic(tag, dir, 99);
    await poll(
      async () => ((await backends()).find((b) => b.name === "remote")?.running ? true : undefined),
      60_000,
      "build running on remote",
    );
    await delay(1500);
    await remote.kill9();
    const failed = await long;
    assert.notEqual(failed.code, 0);
    assert.match(failed.stdout + failed.stderr, /BuildKit backend "remote"/);
    await waitState("remote", "down", 30_000);
    // The same project again, while the remote is down: it builds elsewhere.
    await writeFile(path.join(dir, "Dockerfile"), "FROM busybox:local\nRUN echo rerouted > /where\n");
    const again = await classic(tag, dir, 100);
    assert.equal(again.code, 0, again.stderr);
    const events = await builderEvents(t0);
    assert.ok(events.some((e) => e.Action === "backend-down" && e.Actor.ID === "remote"));
    const reroute = events.filter((e) => e.Action === "build" && e.Actor.Attributes.names === tag).at(-1);
    assert.ok(reroute && reroute.Actor.ID !== "remote", `rerouted to ${reroute?.Actor.ID}`);
    await remote.restart();
    await waitState("remote", "up", 60_000);
    assert.ok((await builderEvents(t0)).some((e) => e.Action === "backend-up" && e.Actor.ID === "remote"));
  });

  test("arca backend drain waits for the running build, then rm leaves the pool without it; no build is lost", async () => {
    // A build placed on b2 (found as above), made slow, then b2 drained under it.
    const { dir, tag } = await projectOn("b2", "drain");
    await writeFile(path.join(dir, "Dockerfile"), "FROM busybox:local\nRUN sleep 6 && echo slow > /slow\n");
    const slow = classic(tag, dir, 7);
    await poll(
      async () => ((await backends()).find((b) => b.name === "b2")?.running ? true : undefined),
      60_000,
      "build on b2",
    );
    const t = Date.now();
    const drained = await arca(["backend", "drain", "b2"]);
    assert.equal(drained.code, 0, drained.stderr);
    assert.match(drained.stderr, /waiting for 1 running build/);
    const built = await slow;
    assert.equal(built.code, 0, `the build running on b2 finished: ${built.stderr}`);
    assert.ok(Date.now() - t > 1000, "drain waited for it");
    assert.equal((await backends()).find((b) => b.name === "b2")?.state, "draining");
    // While drained, b2's projects build elsewhere.
    const t0 = Math.floor(Date.now() / 1000);
    await writeFile(path.join(dir, "Dockerfile"), "FROM busybox:local\nRUN echo moved > /moved\n");
    assert.equal((await classic(tag, dir, 8)).code, 0);
    const moved = (await builderEvents(t0))
      .filter((e) => e.Action === "build" && e.Actor.Attributes.names === tag)
      .at(-1);
    assert.ok(moved && moved.Actor.ID !== "b2", `built on ${moved?.Actor.ID}`);
    const removed = await arca(["backend", "rm", "b2"]);
    assert.equal(removed.code, 0, removed.stderr);
    const ls = await arca(["backend", "ls"]);
    assert.doesNotMatch(ls.stdout, /^b2 /m);
    assert.match(ls.stdout, /^default\s+sandbox\s+up/m);
    assert.match(ls.stdout, /^remote\s+tcp:\/\/127\.0\.0\.1:\d+\s+up/m);
    // Unknown names are refused clearly.
    const unknown = await arca(["backend", "drain", "nope"]);
    assert.notEqual(unknown.code, 0);
    assert.match(unknown.stderr, /no backend named "nope"/);
  });

  test("docker builder prune empties every backend; buildx du and docker system df cover the pool", async () => {
    const df = await ok(["system", "df"]);
    assert.match(df.stdout, /Build Cache/);
    // buildx du sums the pool; each record's description names its backend.
    const du = await ok(["buildx", "du", "--verbose"]);
    assert.match(du.stdout, /Description:\s+\[default\] /);
    assert.match(du.stdout, /Description:\s+\[remote\] /);
    const prune = await ok(["builder", "prune", "-af"]);
    assert.match(prune.stdout, /Total:/);
    for (const name of ["default", "remote"]) {
      const c = controlOf(name);
      try {
        const du = await c.control.diskUsage({});
        const left = du.record.filter((r) => !r.InUse);
        assert.equal(left.length, 0, `${name} still has ${left.length} cache records`);
      } finally {
        c.close();
      }
    }
  });
});
