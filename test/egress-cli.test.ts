/**
 * `arca egress log` over an audit log written by a real proxy, and
 * `arca egress reload` against the daemon's egress part in its own process.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { runEgressCommand } from "../src/cli/egress-command.js";
import { main } from "../src/cli/main.js";
import { EgressPolicy, EgressProxy } from "../src/egress/index.js";
import { curl } from "./support/egress-client.js";
import { type Origin, startOrigin } from "./support/egress-origin.js";

const repo = path.resolve(import.meta.dirname, "..");

function capture() {
  let out = "";
  let err = "";
  return {
    io: { stdout: { write: (s: string) => (out += s) }, stderr: { write: (s: string) => (err += s) } },
    out: () => out,
    err: () => err,
  };
}

let dir: string;
let origin: Origin;

before(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), "arca-egress-cli-"));
  origin = await startOrigin(dir, ["plain.arca.test"]);
});

after(async () => {
  await origin?.close();
  await rm(dir, { recursive: true, force: true });
});

describe("arca egress log", () => {
  test("human lines, --json, --build and --follow over a real proxy's log", async () => {
    const dataRoot = path.join(dir, "log-root");
    const proxy = new EgressProxy({
      policy: EgressPolicy.parse(
        { mode: "allowlist", allow: ["plain.arca.test"], hosts: { "plain.arca.test": "127.0.0.1" } },
        path.join(dataRoot, "egress.json"),
      ),
      auditLogPath: path.join(dataRoot, "egress.log"),
    });
    try {
      const { port } = await proxy.listenTcp("127.0.0.1", 0);
      const a = proxy.register({ id: "build-a", kind: "build", tags: ["app:1"] });
      const b = proxy.register({ id: "build-b", kind: "build", tags: [] });
      const at = (c: typeof a) => c.proxyUrl(`127.0.0.1:${port}`);
      await curl(["-sS", "-x", at(a), `http://plain.arca.test:${origin.httpPort}/hello`]);
      await curl(["-sS", "-x", at(a), "http://denied.arca.test/"]);
      await curl(["-sS", "-x", at(b), `http://plain.arca.test:${origin.httpPort}/hello`]);
      await new Promise((r) => setTimeout(r, 100));

      const all = capture();
      assert.equal(await main(["egress", "log", "--data-root", dataRoot], all.io), 0, all.err());
      const lines = all.out().trim().split("\n");
      assert.equal(lines.length, 3, all.out());
      assert.match(
        lines[0] as string,
        /^\d{4}-\d\d-\d\dT[\d:.]+Z {2}build-a {2}allow {2}GET plain\.arca\.test:\d+ \(127\.0\.0\.1\) {2}up \d+B down \d+B {2}\d+ms {2}allow "plain\.arca\.test"$/,
      );
      assert.match(lines[1] as string, /build-a {2}deny {2}GET denied\.arca\.test:80 .* mode allowlist/);
      assert.match(lines[2] as string, /build-b {2}allow/);

      const json = capture();
      assert.equal(
        await main(["egress", "log", "--data-root", dataRoot, "--json", "--build", "build-a"], json.io),
        0,
      );
      const recs = json
        .out()
        .trim()
        .split("\n")
        .map((l) => JSON.parse(l));
      assert.deepEqual(
        recs.map((r) => [r.build, r.decision, r.host]),
        [
          ["build-a", "allow", "plain.arca.test"],
          ["build-a", "deny", "denied.arca.test"],
        ],
      );
      assert.deepEqual(recs[0].tags, ["app:1"]);

      // --follow prints what exists, then records as they are written.
      const follow = capture();
      const stop = new AbortController();
      const running = runEgressCommand(
        ["log", "--data-root", dataRoot, "--follow", "--build", "build-b"],
        follow.io,
        stop.signal,
      );
      await new Promise((r) => setTimeout(r, 400));
      assert.equal(follow.out().trim().split("\n").length, 1, follow.out());
      await curl(["-sS", "-x", at(b), "http://denied.arca.test/"]);
      for (let i = 0; i < 40 && follow.out().trim().split("\n").length < 2; i++) {
        await new Promise((r) => setTimeout(r, 100));
      }
      stop.abort();
      assert.equal(await running, 0);
      const followed = follow.out().trim().split("\n");
      assert.equal(followed.length, 2, follow.out());
      assert.match(followed[1] as string, /build-b {2}deny {2}GET denied\.arca\.test:80/);
    } finally {
      await proxy.close();
    }
  });

  test("no log yet is said plainly; unknown subcommands fail", async () => {
    const c = capture();
    assert.equal(await main(["egress", "log", "--data-root", path.join(dir, "empty")], c.io), 0);
    assert.match(c.err(), /no egress log yet at .*egress\.log/);
    const bad = capture();
    assert.equal(await main(["egress", "flush"], bad.io), 1);
    assert.match(bad.err(), /unknown egress command "flush"/);
  });
});

describe("arca egress reload", () => {
  test("the daemon takes a valid file, keeps its policy on an invalid one, and says so", async () => {
    const dataRoot = path.join(dir, "reload-root");
    const policyFile = path.join(dataRoot, "egress.json");
    const none = capture();
    assert.equal(await main(["egress", "reload", "--data-root", dataRoot], none.io), 1);
    assert.match(none.err(), /no arca daemon runs on data root/);

    const daemon = spawn(
      process.execPath,
      ["--import", "tsx", path.join(repo, "test/support/egress-daemon.ts"), dataRoot],
      { cwd: repo, stdio: ["ignore", "pipe", "pipe"] },
    );
    let log = "";
    daemon.stderr?.on("data", (d) => {
      log += d;
    });
    try {
      const port = await new Promise<number>((resolve, reject) => {
        daemon.stdout?.on("data", (d) => {
          const m = /ready (\d+)/.exec(String(d));
          if (m) resolve(Number(m[1]));
        });
        daemon.once("exit", () => reject(new Error(`daemon exited: ${log}`)));
      });
      assert.ok(port > 0);

      await writeFile(
        policyFile,
        JSON.stringify({ mode: "allowlist", allow: ["*.example.org", "10.0.0.0/8"] }),
      );
      const ok = capture();
      assert.equal(await main(["egress", "reload", "--data-root", dataRoot], ok.io), 0, ok.err());
      assert.equal(
        ok.out(),
        `egress policy reloaded: allowlist, 2 allow entries, 0 hosts entries (${policyFile})\n`,
      );
      assert.match(log, /egress policy reloaded: allowlist/);

      await writeFile(policyFile, JSON.stringify({ mode: "allowlist", allow: ["ok.org", "not a host"] }));
      const bad = capture();
      assert.equal(await main(["egress", "reload", "--data-root", dataRoot], bad.io), 1);
      assert.match(
        bad.err(),
        /not reloaded: invalid egress policy .*egress\.json: "allow"\[1\] "not a host" is not a host name/,
      );
      assert.match(bad.err(), /in force: allowlist, 2 allow entries/);

      // SIGHUP straight to the daemon (as `kill -HUP` would): it refuses the file and keeps the old policy.
      daemon.kill("SIGHUP");
      for (let i = 0; i < 50 && !/not reloaded/.test(log); i++) await new Promise((r) => setTimeout(r, 100));
      assert.match(
        log,
        /egress policy not reloaded \(the previous one stays in force\): invalid egress policy/,
      );
      const status = JSON.parse(await readFile(path.join(dataRoot, "run", "egress-policy.json"), "utf8"));
      assert.equal(status.ok, false);
      assert.match(status.policy, /^allowlist, 2 allow entries/);
    } finally {
      daemon.kill("SIGTERM");
      await new Promise((r) => daemon.once("exit", r));
    }
  });
});
