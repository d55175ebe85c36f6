import assert from "node:assert/strict";
import { copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { seedBusybox } from "./support/busybox-rootfs.js";
import { type DaemonProc, startDaemon } from "./support/daemon.js";
import { dockerCli, dockerConfigWithBuildx } from "./support/docker-cli.js";
import { type Origin, RANDOM_SIZE, startOrigin } from "./support/egress-origin.js";
import { tool } from "./support/tools.js";

/** The host's first non-loopback IPv4 address (the egress proxy refuses it unless named). */
function ownAddress(): string {
  for (const list of Object.values(os.networkInterfaces())) {
    for (const a of list ?? []) if (a.family === "IPv4" && !a.internal) return a.address;
  }
  throw new Error("this host has no non-loopback IPv4 address");
}

// The whole egress path with real parts: RUN steps on the CNI step network in the sandbox reach the
// daemon's egress proxy through arca-proxy and the channel; buildkitd's own fetches (ADD https://)
// go the same way; local origins stand in for the internet under names from the policy's hosts map.
describe("egress: RUN steps and ADD go out through the daemon's proxy only", { timeout: 600_000 }, () => {
  let tmp: string;
  let dataRoot: string;
  let socket: string;
  let daemon: DaemonProc;
  let origin: Origin;
  let env: NodeJS.ProcessEnv;
  let ctxCount = 0;

  const { cli, ok } = dockerCli(() => env);
  /** A context with the static probe and this Dockerfile. */
  const context = async (dockerfile: string): Promise<string> => {
    const dir = path.join(tmp, `ctx-${++ctxCount}`);
    await mkdir(dir, { recursive: true });
    await copyFile(tool("arca-net-probe"), path.join(dir, "arca-net-probe"));
    await writeFile(path.join(dir, "Dockerfile"), dockerfile);
    return dir;
  };
  const classic = (args: string[]) => cli(["build", ...args], { DOCKER_BUILDKIT: "0" });
  const auditRecords = async (): Promise<Record<string, unknown>[]> =>
    (await readFile(path.join(dataRoot, "egress.log"), "utf8"))
      .split("\n")
      .filter(Boolean)
      .map((l) => JSON.parse(l) as Record<string, unknown>);
  const writePolicy = (doc: unknown) => writeFile(path.join(dataRoot, "egress.json"), JSON.stringify(doc));
  const hosts = () => ({ "files.arca.test": "127.0.0.1", "other.arca.test": "127.0.0.1" });
  const reloadPolicy = async (doc: unknown) => {
    await writePolicy(doc);
    const before = (daemon.output().match(/egress policy reloaded/g) ?? []).length;
    daemon.proc.kill("SIGHUP");
    await daemon.waitFor(new RegExp(`(?:[^]*egress policy reloaded){${before + 1}}`), 10_000);
  };

  before(async () => {
    tmp = await mkdtemp(path.join(os.tmpdir(), "arca-egress-build-"));
    dataRoot = path.join(tmp, "data");
    socket = path.join(tmp, "arca.sock");
    origin = await startOrigin(tmp, ["files.arca.test", "other.arca.test"]);
    await mkdir(dataRoot, { recursive: true });
    await writePolicy({ mode: "audit", hosts: hosts() });
    // ADD https:// is fetched by buildkitd, which trusts the origin's CA through certs.d (dockerd's layout).
    const certs = path.join(dataRoot, "certs.d", `files.arca.test:${origin.httpsPort}`);
    await mkdir(certs, { recursive: true });
    await copyFile(origin.caFile, path.join(certs, "ca.crt"));
    const dockerConfig = await dockerConfigWithBuildx(path.join(tmp, "docker-config"));
    await seedBusybox(dataRoot, tmp);
    daemon = startDaemon(dataRoot, socket);
    await daemon.waitFor(/ready in/);
    env = {
      ...process.env,
      DOCKER_HOST: `unix://${socket}`,
      DOCKER_CONFIG: dockerConfig,
      BUILDX_CONFIG: path.join(tmp, "buildx-config"),
      BUILDX_BUILDER: "",
    };
  });

  after(async () => {
    if (process.env.ARCA_TEST_DEBUG) console.log(daemon?.output());
    await daemon?.stop();
    await origin?.close();
    await rm(tmp, { recursive: true, force: true });
  });

  test("the worker's network is CNI, never host", async () => {
    const r = await ok(["buildx", "inspect"]);
    assert.match(r.stdout, /org\.mobyproject\.buildkit\.worker\.network:\s+cni/);
  });

  test("classic: a RUN step downloads 64 MiB over HTTP and HTTPS through the proxy, ADD https:// too; audited per build", async () => {
    const o = origin;
    const ctx = await context(
      [
        "FROM busybox:local",
        "COPY arca-net-probe /probe",
        `RUN /probe get http://files.arca.test:${o.httpPort}/random`,
        `RUN PROBE_INSECURE=1 /probe get https://files.arca.test:${o.httpsPort}/random`,
        `ADD https://files.arca.test:${o.httpsPort}/random /added.bin`,
        "RUN sha256sum /added.bin",
        "",
      ].join("\n"),
    );
    const r = await classic(["--no-cache", "-t", "egress:classic", ctx]);
    assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
    const line = `size=${RANDOM_SIZE} sha256=${o.randomSha256}`;
    assert.equal(r.stdout.split(line).length - 1, 2, `two downloads of the file:\n${r.stdout}`);
    assert.ok(r.stdout.includes(`${o.randomSha256}  /added.bin`), r.stdout);
    const summary =
      /egress: (\d+) requests? to 1 host, 0 denied \(arca egress log --build (build-[0-9a-f-]+)\)/.exec(
        r.stdout,
      );
    assert.ok(summary, `no egress summary in:\n${r.stdout}`);
    const build = summary[2];
    const records = await auditRecords();
    const mine = records.filter((x) => x.build === build);
    assert.equal(mine.length, 2, JSON.stringify(mine));
    for (const x of mine) {
      assert.equal(x.host, "files.arca.test");
      assert.equal(x.decision, "allow");
      assert.equal(x.address, "127.0.0.1");
      assert.ok((x.bytesDown as number) >= RANDOM_SIZE, `bytesDown ${x.bytesDown}`);
    }
    assert.deepEqual(mine.map((x) => x.method).sort(), ["CONNECT", "GET"]);
    // The proxy credential is a build arg BuildKit keeps out of the image.
    const hist = await ok(["history", "--no-trunc", "egress:classic"]);
    assert.doesNotMatch(hist.stdout, /PROXY|3128/i);
    const cfg = await ok(["inspect", "--format", "{{json .Config.Env}}", "egress:classic"]);
    assert.doesNotMatch(cfg.stdout, /PROXY/i);
  });

  test("buildx: the same download works and the step sees its proxy", async () => {
    const ctx = await context(
      [
        "FROM busybox:local",
        "COPY arca-net-probe /probe",
        `RUN /probe get http://files.arca.test:${origin.httpPort}/random && echo "proxy=$HTTPS_PROXY"`,
        "",
      ].join("\n"),
    );
    const r = await ok(["buildx", "build", "--progress=plain", "--no-cache", ctx]);
    assert.ok(r.stderr.includes(`size=${RANDOM_SIZE} sha256=${origin.randomSha256}`), r.stderr);
    assert.match(r.stderr, /proxy=http:\/\/build-[0-9a-f-]+:[A-Za-z0-9_-]+@10\.89\.0\.1:3128/);
  });

  test("a step reaches the egress listener and nothing else; loopback, link-local and the host's own address are refused", async () => {
    const own = ownAddress();
    const ctx = await context(
      [
        "FROM busybox:local",
        "COPY arca-net-probe /probe",
        // The probe works: the egress listener answers.
        "RUN /probe connect 10.89.0.1:3128",
        [
          "RUN for t in 10.89.0.1:8088 10.89.0.1:5991 10.89.0.1:5000 10.89.0.1:22 127.0.0.1:8088 127.0.0.1:5991 127.0.0.1:3128;",
          'do if /probe connect $t; then echo "REACHED $t"; exit 1; fi; done; echo fenced',
        ].join(" "),
        "RUN /probe get http://169.254.169.254/latest/meta-data/ || true",
        `RUN PROBE_PROXY_ALL=1 /probe get http://127.0.0.1:${origin.httpPort}/hello || true`,
        `RUN /probe get http://${own}:${origin.httpPort}/hello || true`,
        // Name lookups inside a step fail at once (no resolver is reachable), never after DNS timeouts.
        'RUN s=$(date +%s); nslookup files.arca.test || true; echo "dns-seconds=$(( $(date +%s) - s ))"',
        "",
      ].join("\n"),
    );
    const r = await classic(["--no-cache", ctx]);
    assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
    const dns = /dns-seconds=(\d+)/.exec(r.stdout);
    assert.ok(dns && Number(dns[1]) <= 2, `slow or missing DNS failure:\n${r.stdout}`);
    assert.match(r.stdout, /fenced/);
    assert.doesNotMatch(r.stdout, /REACHED \d/);
    assert.match(r.stdout, /403 Forbidden[^\n]*169\.254\.169\.254[^\n]*link-local/i);
    assert.match(r.stdout, /403 Forbidden[^\n]*127\.0\.0\.1[^\n]*loopback/i);
    assert.match(r.stdout, new RegExp(`403 Forbidden[^\\n]*${own.replace(/\./g, "\\.")}`));
    assert.match(r.stdout, /egress: 3 requests to 3 hosts, 3 denied/);
  });

  test("--network none: a step has only lo and cannot reach the egress listener", async () => {
    const ctx = await context(
      [
        "FROM busybox:local",
        "COPY arca-net-probe /probe",
        "RUN cat /proc/net/dev | tail -n +3 | cut -d: -f1 | tr -d ' ' | tr '\\n' ' '; echo",
        'RUN if /probe connect 10.89.0.1:3128; then echo "REACHED egress"; exit 1; fi; echo no-network',
        "",
      ].join("\n"),
    );
    const r = await classic(["--no-cache", "--network", "none", ctx]);
    assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
    assert.match(r.stdout, /^lo $/m);
    assert.match(r.stdout, /no-network/);
    assert.doesNotMatch(r.stdout, /egress: /, "no credential for a build without network");
  });

  test("a build's credential dies with it: a later build cannot use it", async () => {
    const leak = await context(["FROM busybox:local", 'RUN echo "leaked=$HTTP_PROXY"', ""].join("\n"));
    const first = await classic(["--no-cache", leak]);
    assert.equal(first.code, 0, first.stdout);
    const url = /leaked=(http:\/\/\S+)/.exec(first.stdout)?.[1];
    assert.ok(url, first.stdout);
    const reuse = await context(
      [
        "FROM busybox:local",
        "COPY arca-net-probe /probe",
        `RUN HTTP_PROXY='${url}' /probe get http://files.arca.test:${origin.httpPort}/hello || true`,
        "",
      ].join("\n"),
    );
    const second = await classic(["--no-cache", reuse]);
    assert.equal(second.code, 0, second.stdout);
    assert.match(second.stdout, /407 Proxy Authentication Required/);
  });

  test("allowlist: an allowed host works, another is denied with the rule in the build output; both audited", async () => {
    await reloadPolicy({ mode: "allowlist", allow: ["files.arca.test"], hosts: hosts() });
    try {
      const ctx = await context(
        [
          "FROM busybox:local",
          "COPY arca-net-probe /probe",
          `RUN /probe get http://files.arca.test:${origin.httpPort}/hello`,
          `RUN /probe get http://other.arca.test:${origin.httpPort}/hello`,
          "",
        ].join("\n"),
      );
      const r = await classic(["--no-cache", ctx]);
      assert.notEqual(r.code, 0, r.stdout);
      const out = `${r.stdout}\n${r.stderr}`;
      assert.match(out, /egress denied: GET other\.arca\.test:\d+ \(rule: [^)]*allowlist/);
      assert.match(out, /403 Forbidden/);
      assert.match(out, /egress: 2 requests to 2 hosts, 1 denied/);
      const records = await auditRecords();
      assert.ok(records.some((x) => x.host === "other.arca.test" && x.decision === "deny"));
      assert.ok(records.some((x) => x.host === "files.arca.test" && x.decision === "allow"));
    } finally {
      await reloadPolicy({ mode: "audit", hosts: hosts() });
    }
  });

  // Last: it stops the daemon, which closes buildkitd's kept-alive tunnels and so writes their records.
  test("buildkitd's own fetches (ADD https://) are audited as buildkitd's", async () => {
    await daemon.stop();
    const add = (await auditRecords()).find(
      (x) => x.client === "buildkitd" && x.port === origin.httpsPort && x.method === "CONNECT",
    );
    assert.ok(add, "no buildkitd record for the ADD");
    assert.equal(add.decision, "allow");
    assert.ok((add.bytesDown as number) >= RANDOM_SIZE);
  });
});
