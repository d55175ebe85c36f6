/**
 * The daemon's egress proxy over real sockets: curl and Node clients through
 * it to local plain-HTTP and TLS origins named through the policy's hosts
 * map; policy modes, always-refused ranges, credentials, audit log, and
 * hostile clients and upstreams.
 */
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { readdirSync } from "node:fs";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import http from "node:http";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import tls from "node:tls";
import {
  type EgressAuditRecord,
  type EgressCredential,
  EgressPolicy,
  type EgressPolicyDoc,
  EgressProxy,
  parseAuditLine,
} from "../src/egress/index.js";
import { basicAuth, connectVia, curl } from "./support/egress-client.js";
import { type Origin, RANDOM_SIZE, startBlackHole, startOrigin } from "./support/egress-origin.js";

const NAMES = ["plain.arca.test", "tls.arca.test", "other.arca.test"];
const HOSTS = Object.fromEntries(NAMES.map((n) => [n, "127.0.0.1"]));

let dir: string;
let origin: Origin;
let proxy: EgressProxy;
let proxyPort: number;
let socketPath: string;
let auditLog: string;
let cred: EgressCredential;
let policyFile: string;

const policy = (doc: EgressPolicyDoc) => EgressPolicy.parse(doc, policyFile);
const proxyUrl = (c: EgressCredential = cred) => c.proxyUrl(`127.0.0.1:${proxyPort}`);

async function auditRecords(): Promise<EgressAuditRecord[]> {
  // Records are queued on a write stream: give it a moment to reach the file.
  await new Promise((r) => setTimeout(r, 50));
  return (await readFile(auditLog, "utf8"))
    .split("\n")
    .map(parseAuditLine)
    .filter((r): r is EgressAuditRecord => r !== undefined);
}

/** A record matching `pred` written after `since` records, waiting for it briefly. */
async function recordFor(pred: (r: EgressAuditRecord) => boolean, since = 0): Promise<EgressAuditRecord> {
  for (let i = 0; i < 40; i++) {
    const found = (await auditRecords()).slice(since).find(pred);
    if (found) return found;
  }
  assert.fail(`no audit record matched in ${auditLog}:\n${await readFile(auditLog, "utf8")}`);
}

function openFds(): number {
  return readdirSync("/proc/self/fd").length;
}

before(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), "arca-egress-"));
  policyFile = path.join(dir, "egress.json");
  auditLog = path.join(dir, "egress.log");
  origin = await startOrigin(dir, NAMES);
  proxy = new EgressProxy({
    policy: policy({ mode: "audit", hosts: HOSTS }),
    auditLogPath: auditLog,
    dialTimeoutMs: 1000,
    headersTimeoutMs: 1000,
    responseTimeoutMs: 1000,
  });
  proxyPort = (await proxy.listenTcp("127.0.0.1", 0)).port;
  socketPath = path.join(dir, "egress.sock");
  await proxy.listen(socketPath);
  cred = proxy.register({ id: "build-a", kind: "build", tags: ["app:1"] });
});

after(async () => {
  await proxy?.close();
  await origin?.close();
  await rm(dir, { recursive: true, force: true });
});

describe("downloads through the proxy", () => {
  test("curl: 64 MiB over plain HTTP, sha256 intact, audited with bytes", async () => {
    const since = (await auditRecords()).length;
    const r = await curl([
      "-sS",
      "--fail",
      "-x",
      proxyUrl(),
      `http://plain.arca.test:${origin.httpPort}/random`,
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.bytes, RANDOM_SIZE);
    assert.equal(r.sha256, origin.randomSha256);
    const rec = await recordFor((x) => x.method === "GET" && x.host === "plain.arca.test", since);
    assert.equal(rec.decision, "allow");
    assert.equal(rec.build, "build-a");
    assert.deepEqual(rec.tags, ["app:1"]);
    assert.equal(rec.address, "127.0.0.1");
    assert.equal(rec.rule, 'hosts "plain.arca.test"');
    assert.ok(rec.bytesDown > RANDOM_SIZE, `bytesDown ${rec.bytesDown}`);
    assert.ok(rec.bytesUp > 0);
  });

  test("curl: 64 MiB over TLS through CONNECT (not terminated: the origin's certificate verifies)", async () => {
    const since = (await auditRecords()).length;
    const r = await curl([
      "-sS",
      "--fail",
      "--cacert",
      origin.caFile,
      "-x",
      proxyUrl(),
      `https://tls.arca.test:${origin.httpsPort}/random`,
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.sha256, origin.randomSha256);
    const rec = await recordFor((x) => x.method === "CONNECT" && x.host === "tls.arca.test", since);
    assert.equal(rec.decision, "allow");
    assert.equal(rec.port, origin.httpsPort);
    assert.ok(rec.bytesDown > RANDOM_SIZE && rec.bytesUp > 0, JSON.stringify(rec));
  });

  test("Node clients: TLS over CONNECT on the unix socket, plain HTTP with keep-alive", async () => {
    const c = await connectVia(
      { socketPath },
      `tls.arca.test:${origin.httpsPort}`,
      basicAuth(cred.username, cred.password),
    );
    assert.equal(c.status, 200);
    const secure = tls.connect({
      socket: c.socket as net.Socket,
      servername: "tls.arca.test",
      ca: origin.ca,
    });
    const body = await new Promise<string>((resolve, reject) => {
      const req = http.request(
        { createConnection: () => secure, path: "/hello", headers: { Host: "tls.arca.test" } },
        (res) => {
          let s = "";
          res.on("data", (d) => {
            s += d;
          });
          res.on("end", () => resolve(s));
        },
      );
      req.on("error", reject);
      req.end();
    });
    assert.equal(body, "hello from origin\n");

    // Two requests on one kept-alive client connection; the proxy strips its own headers.
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    const get = (p: string) =>
      new Promise<{ status: number; body: string; socket: net.Socket }>((resolve, reject) => {
        const req = http.request(
          {
            agent,
            host: "127.0.0.1",
            port: proxyPort,
            path: `http://plain.arca.test:${origin.httpPort}${p}`,
            headers: {
              "Proxy-Authorization": basicAuth(cred.username, cred.password),
              "Proxy-Connection": "keep-alive",
              "X-Keep": "yes",
            },
          },
          (res) => {
            let s = "";
            res.on("data", (d) => {
              s += d;
            });
            res.on("end", () =>
              resolve({ status: res.statusCode ?? 0, body: s, socket: req.socket as net.Socket }),
            );
          },
        );
        req.on("error", reject);
        req.end();
      });
    const first = await get("/echo");
    const second = await get("/hello");
    assert.equal(first.status, 200);
    const echoed = JSON.parse(first.body) as { url: string; headers: Record<string, string> };
    assert.equal(echoed.url, "/echo");
    assert.equal(echoed.headers.host, `plain.arca.test:${origin.httpPort}`);
    assert.equal(echoed.headers["x-keep"], "yes");
    assert.equal(echoed.headers["proxy-authorization"], undefined);
    assert.equal(echoed.headers["proxy-connection"], undefined);
    assert.equal(second.body, "hello from origin\n");
    assert.equal(first.socket, second.socket, "the client's connection to the proxy was reused");
    agent.destroy();
  });
});

describe("plain-HTTP framing", () => {
  test("uploads with Content-Length and chunked, chunked and empty responses, HEAD, raw paths", async () => {
    const file = path.join(dir, "upload.bin");
    const data = randomBytes(8 << 20);
    await writeFile(file, data);
    const sha = createHash("sha256").update(data).digest("hex");
    const echo = `http://plain.arca.test:${origin.httpPort}/echo`;
    for (const extra of [[], ["-H", "Transfer-Encoding: chunked"]]) {
      const r = await curl(
        ["-sS", "--fail", "-x", proxyUrl(), "--data-binary", `@${file}`, ...extra, echo],
        true,
      );
      assert.equal(r.code, 0, r.stderr);
      const got = JSON.parse(r.stdout.toString()) as {
        bytes: number;
        sha256: string;
        headers: Record<string, string>;
      };
      assert.deepEqual([got.bytes, got.sha256], [data.length, sha], `upload ${extra.join(" ")}`);
      if (extra.length) assert.equal(got.headers["transfer-encoding"], "chunked");
      else assert.equal(got.headers["content-length"], String(data.length));
    }
    // An upload slower than the response timeout (1 s here): the timeout counts from the body's end.
    const slow = await curl(
      ["-sS", "--fail", "--limit-rate", "3M", "-x", proxyUrl(), "--data-binary", `@${file}`, echo],
      true,
    );
    assert.equal(slow.code, 0, slow.stderr);
    assert.equal((JSON.parse(slow.stdout.toString()) as { sha256: string }).sha256, sha);
    const chunked = await curl(
      ["-sS", "--fail", "-x", proxyUrl(), `http://plain.arca.test:${origin.httpPort}/chunked`],
      true,
    );
    assert.equal(chunked.code, 0, chunked.stderr);
    assert.equal(chunked.stdout.toString(), Array.from({ length: 100 }, (_, i) => `line ${i}\n`).join(""));
    const head = await curl(
      ["-sS", "-I", "-x", proxyUrl(), `http://plain.arca.test:${origin.httpPort}/random`],
      true,
    );
    assert.equal(head.code, 0, head.stderr);
    assert.match(
      head.stdout.toString(),
      new RegExp(`^HTTP/1.1 200 OK\r\n[\\s\\S]*Content-Length: ${RANDOM_SIZE}\r\n`, "i"),
    );
    const empty = await curl(
      ["-sS", "-D", "-", "-x", proxyUrl(), `http://plain.arca.test:${origin.httpPort}/empty`],
      true,
    );
    assert.match(empty.stdout.toString(), /^HTTP\/1.1 204 No Content\r\n/);
    const raw = await curl(["-sS", "--path-as-is", "-x", proxyUrl(), `${echo}?q=a%2Fb&r=/c/../d`], true);
    assert.equal((JSON.parse(raw.stdout.toString()) as { url: string }).url, "/echo?q=a%2Fb&r=/c/../d");
  });

  test("odd upstreams: interim 1xx, close-delimited body, truncated body, not HTTP at all", async () => {
    const odd = net.createServer((sock) => {
      sock.once("data", (d) => {
        const path = String(d).split(" ")[1] ?? "";
        if (path === "/interim") {
          sock.end("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nX-A: 1\r\n\r\nuntil the end");
        } else if (path === "/dribble") {
          // A chunked response one byte per write: every line and chunk boundary split across reads.
          const text =
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\nA\r\n, world..\n\r\n0\r\nX-T: 1\r\n\r\n";
          sock.setNoDelay(true);
          let i = 0;
          const next = () => {
            if (i < text.length) sock.write(text[i++] as string, () => setTimeout(next, 1));
          };
          next();
        } else if (path === "/short") {
          sock.end("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nabc");
        } else {
          sock.end("SSH-2.0-OpenSSH_9.2\r\n");
        }
      });
      sock.on("error", () => {});
    });
    await new Promise<void>((r) => odd.listen(0, "127.0.0.1", r));
    const port = (odd.address() as net.AddressInfo).port;
    try {
      const at = (p: string) => `http://plain.arca.test:${port}${p}`;
      const interim = await curl(["-sS", "-D", "-", "-x", proxyUrl(), at("/interim")], true);
      assert.equal(interim.code, 0, interim.stderr);
      assert.match(
        interim.stdout.toString(),
        /^HTTP\/1.1 200 OK\r\n[\s\S]*X-A: 1\r\n[\s\S]*\r\n\r\nuntil the end$/,
      );
      const dribble = await curl(["-sS", "--fail", "-x", proxyUrl(), at("/dribble")], true);
      assert.equal(dribble.code, 0, dribble.stderr);
      assert.equal(dribble.stdout.toString(), "hello, world..\n");
      const short = await curl(["-sS", "-x", proxyUrl(), at("/short")], true);
      assert.notEqual(short.code, 0, "a truncated body is not reported as complete");
      const ssh = await curl(["-sS", "-D", "-", "-x", proxyUrl(), at("/ssh")], true);
      assert.match(
        ssh.stdout.toString(),
        /^HTTP\/1.1 502 Bad Gateway \(arca egress: plain\.arca\.test:\d+ \(127\.0\.0\.1\) not an HTTP\/1.x response: "SSH-2.0-OpenSSH_9.2"\)/,
      );
    } finally {
      odd.close();
    }
  });
});

describe("policy", () => {
  test("allowlist: the listed host works, another is denied with 403, rule and the exact fix; both audited", async () => {
    proxy.setPolicy(policy({ mode: "allowlist", allow: ["plain.arca.test"], hosts: HOSTS }));
    try {
      const since = (await auditRecords()).length;
      const ok = await curl(
        ["-sS", "--fail", "-x", proxyUrl(), `http://plain.arca.test:${origin.httpPort}/hello`],
        true,
      );
      assert.equal(ok.code, 0, ok.stderr);
      assert.equal(ok.stdout.toString(), "hello from origin\n");

      const no = await curl(
        ["-sS", "-D", "-", "-x", proxyUrl(), `http://other.arca.test:${origin.httpPort}/hello`],
        true,
      );
      const out = no.stdout.toString();
      const target = `other.arca.test:${origin.httpPort}`;
      assert.match(
        out,
        /^HTTP\/1.1 403 Forbidden \(arca egress denied GET other\.arca\.test:\d+ by rule "mode allowlist"/,
      );
      assert.match(
        out,
        new RegExp(`X-Arca-Egress-Denied: ${target}; rule="mode allowlist"; policy=${policyFile}`, "i"),
      );
      const fix = `add "${target}" to "allow" in ${policyFile} and run \`arca egress reload\``;
      assert.ok(out.includes(`X-Arca-Egress-Hint: ${fix}`), out);
      assert.ok(out.includes(`to allow it: ${fix}`), out);

      // CONNECT to a host not listed: curl reports the proxy's refusal.
      const tunnel = await curl([
        "-sS",
        "-v",
        "--cacert",
        origin.caFile,
        "-x",
        proxyUrl(),
        `https://tls.arca.test:${origin.httpsPort}/hello`,
      ]);
      assert.notEqual(tunnel.code, 0);
      assert.match(
        tunnel.stderr,
        /< HTTP\/1.1 403 Forbidden \(arca egress denied CONNECT tls\.arca\.test:\d+ by rule "mode allowlist"/,
      );
      assert.match(tunnel.stderr, /CONNECT tunnel failed, response 403/);

      const recs = (await auditRecords()).slice(since);
      assert.ok(
        recs.some(
          (r) =>
            r.host === "plain.arca.test" && r.decision === "allow" && r.rule === 'allow "plain.arca.test"',
        ),
      );
      assert.ok(
        recs.some(
          (r) => r.host === "other.arca.test" && r.decision === "deny" && r.rule === "mode allowlist",
        ),
      );
      assert.ok(
        recs.some((r) => r.host === "tls.arca.test" && r.method === "CONNECT" && r.decision === "deny"),
      );
    } finally {
      proxy.setPolicy(policy({ mode: "audit", hosts: HOSTS }));
    }
  });

  test("audit: both hosts pass and both are logged", async () => {
    const since = (await auditRecords()).length;
    for (const host of ["plain.arca.test", "other.arca.test"]) {
      const r = await curl(["-sS", "--fail", "-x", proxyUrl(), `http://${host}:${origin.httpPort}/hello`]);
      assert.equal(r.code, 0, r.stderr);
    }
    const recs = (await auditRecords()).slice(since);
    assert.deepEqual(
      recs.map((r) => [r.host, r.decision]),
      [
        ["plain.arca.test", "allow"],
        ["other.arca.test", "allow"],
      ],
    );
  });

  test("deny: nothing leaves", async () => {
    proxy.setPolicy(policy({ mode: "deny", allow: ["plain.arca.test"], hosts: HOSTS }));
    try {
      const c = await connectVia(
        { port: proxyPort },
        `plain.arca.test:${origin.httpPort}`,
        basicAuth(cred.username, cred.password),
      );
      assert.equal(c.status, 403);
      assert.match(c.statusMessage, /by rule "mode deny"/);
      assert.match(c.body, /set "mode" to "allowlist"/);
    } finally {
      proxy.setPolicy(policy({ mode: "audit", hosts: HOSTS }));
    }
  });

  const ownV4 = Object.values(os.networkInterfaces())
    .flat()
    .find((a) => a && !a.internal && a.family === "IPv4")?.address;

  test("loopback, link-local (metadata) and this host's own address are refused by default, allowed when named", async () => {
    assert.ok(ownV4, "this test needs a non-loopback IPv4 interface address");
    const auth = basicAuth(cred.username, cred.password);
    const cases: [string, RegExp][] = [
      [`127.0.0.1:${origin.httpsPort}`, /always-refused loopback 127\.0\.0\.0\/8/],
      [`[::ffff:127.0.0.1]:${origin.httpsPort}`, /always-refused loopback/],
      ["169.254.169.254:80", /always-refused link-local \(cloud metadata\)/],
      [`${ownV4}:${origin.httpsPort}`, /always-refused an address of this host/],
      [`localhost:${origin.httpsPort}`, /always-refused loopback/],
    ];
    for (const [target, rule] of cases) {
      const c = await connectVia({ port: proxyPort }, target, auth);
      assert.equal(c.status, 403, target);
      assert.match(c.statusMessage, rule);
      assert.match(
        c.headers["x-arca-egress-hint"] as string,
        /to "allow" in .*egress\.json and run `arca egress reload`/,
      );
    }
    // Plain HTTP to the metadata endpoint too.
    const meta = await curl(
      [
        "-sS",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "-x",
        proxyUrl(),
        "http://169.254.169.254/latest/meta-data/",
      ],
      true,
    );
    assert.equal(meta.stdout.toString(), "403");

    proxy.setPolicy(
      policy({
        mode: "audit",
        allow: ["127.0.0.1", `${ownV4}:${origin.httpsPort}`, "169.254.169.254/32"],
        hosts: HOSTS,
      }),
    );
    try {
      for (const target of [`127.0.0.1:${origin.httpsPort}`, `${ownV4}:${origin.httpsPort}`]) {
        const c = await connectVia({ port: proxyPort }, target, auth);
        assert.equal(c.status, 200, `${target}: ${c.statusMessage}`);
        c.socket?.destroy();
      }
      // Named, so the policy allows it: whether anything answers there depends on the machine.
      const since = (await auditRecords()).length;
      const m = await connectVia({ port: proxyPort }, "169.254.169.254:80", auth);
      m.socket?.destroy();
      assert.notEqual(m.status, 403, m.statusMessage);
      const rec = await recordFor((r) => r.host === "169.254.169.254", since);
      assert.notEqual(rec.decision, "deny");
      assert.equal(rec.rule, 'allow "169.254.169.254/32"');
    } finally {
      proxy.setPolicy(policy({ mode: "audit", hosts: HOSTS }));
    }
  });

  test("a name that does not resolve: 502 naming the host", async () => {
    const r = await curl(["-sS", "-D", "-", "-x", proxyUrl(), "http://no-such-host.invalid/"], true);
    assert.match(
      r.stdout.toString(),
      /^HTTP\/1.1 502 Bad Gateway \(arca egress: cannot resolve "no-such-host\.invalid": no such host \(ENOTFOUND\)\)/,
    );
  });
});

describe("credentials", () => {
  test("each client gets its own; missing, unknown and released ones get 407", async () => {
    const other = proxy.register({ id: "build-b", kind: "build", tags: [] });
    assert.notEqual(other.password, cred.password);
    assert.equal(other.username, "build-b");
    const target = `tls.arca.test:${origin.httpsPort}`;

    const none = await connectVia({ port: proxyPort }, target);
    assert.equal(none.status, 407);
    assert.equal(none.headers["proxy-authenticate"], 'Basic realm="arca-egress"');
    assert.match(none.body, /no proxy credential/);
    // A's user name with B's token is no credential at all.
    const mixed = await connectVia({ port: proxyPort }, target, basicAuth("build-a", other.password));
    assert.equal(mixed.status, 407);

    const since = (await auditRecords()).length;
    const ok = await connectVia({ port: proxyPort }, target, basicAuth(other.username, other.password));
    assert.equal(ok.status, 200);
    ok.socket?.destroy();
    const rec = await recordFor((r) => r.method === "CONNECT" && r.decision === "allow", since);
    assert.equal(rec.build, "build-b");

    other.release();
    const released = await connectVia({ port: proxyPort }, target, basicAuth(other.username, other.password));
    assert.equal(released.status, 407);
    assert.match(released.body, /"build-b" is unknown or was released/);
    const plain = await curl(
      [
        "-sS",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "-x",
        other.proxyUrl(`127.0.0.1:${proxyPort}`),
        `http://plain.arca.test:${origin.httpPort}/hello`,
      ],
      true,
    );
    assert.equal(plain.stdout.toString(), "407");
    const summary = proxy.summary("build-b");
    assert.equal(summary.requests, 1);
    assert.equal(summary.denied, 0);
  });

  test("summary and live records: requests, hosts, denials as they happen", async () => {
    const c = proxy.register({ id: "build-c", kind: "build", tags: ["c:latest"] });
    const seen: EgressAuditRecord[] = [];
    const off = proxy.onRecord((r) => {
      if (r.client === "build-c") seen.push(r);
    });
    proxy.setPolicy(policy({ mode: "allowlist", allow: ["plain.arca.test"], hosts: HOSTS }));
    try {
      const url = c.proxyUrl(`127.0.0.1:${proxyPort}`);
      await curl(["-sS", "-x", url, `http://plain.arca.test:${origin.httpPort}/hello`]);
      await curl(["-sS", "-x", url, `http://plain.arca.test:${origin.httpPort}/hello`]);
      await curl(["-sS", "-x", url, `http://other.arca.test:${origin.httpPort}/hello`]);
    } finally {
      proxy.setPolicy(policy({ mode: "audit", hosts: HOSTS }));
      off();
    }
    const s = proxy.summary("build-c");
    assert.deepEqual([s.requests, s.hosts, s.denied], [3, 2, 1]);
    assert.equal(s.denials[0]?.host, "other.arca.test");
    assert.ok(s.bytesDown > 0);
    assert.equal(seen.length, 3);
    c.release();
  });
});

describe("hostile clients and upstreams", () => {
  test("an upstream that never accepts: 504 after the dial timeout, naming it", async () => {
    const hole = await startBlackHole();
    proxy.setPolicy(policy({ mode: "audit", hosts: { ...HOSTS, "hole.arca.test": "127.0.0.1" } }));
    try {
      const t0 = Date.now();
      const c = await connectVia(
        { port: proxyPort },
        `hole.arca.test:${hole.port}`,
        basicAuth(cred.username, cred.password),
      );
      assert.equal(c.status, 504);
      assert.match(
        c.statusMessage,
        /connecting to hole\.arca\.test:\d+ \(127\.0\.0\.1\) timed out after 1 s/,
      );
      assert.ok(Date.now() - t0 < 3000);
    } finally {
      hole.close();
      proxy.setPolicy(policy({ mode: "audit", hosts: HOSTS }));
    }
  });

  test("an upstream that never answers a plain request: 504", async () => {
    const r = await curl(
      ["-sS", "-D", "-", "-x", proxyUrl(), `http://plain.arca.test:${origin.httpPort}/never`],
      true,
    );
    assert.match(
      r.stdout.toString(),
      /^HTTP\/1.1 504 Gateway Timeout \(arca egress: plain\.arca\.test:\d+ \(127\.0\.0\.1\) sent no response within 1 s\)/,
    );
  });

  test("a redirect loop is the client's problem; the proxy stays healthy", async () => {
    const loop = await curl([
      "-sS",
      "-L",
      "--max-redirs",
      "30",
      "-x",
      proxyUrl(),
      `http://plain.arca.test:${origin.httpPort}/redirect`,
    ]);
    assert.equal(loop.code, 47, loop.stderr);
    const ok = await curl([
      "-sS",
      "--fail",
      "-x",
      proxyUrl(),
      `http://plain.arca.test:${origin.httpPort}/hello`,
    ]);
    assert.equal(ok.code, 0);
  });

  test("a client that never finishes its request head is dropped; huge heads are refused", async () => {
    const t0 = Date.now();
    const reply = await new Promise<string>((resolve) => {
      const s = net.connect(proxyPort, "127.0.0.1", () =>
        s.write("CONNECT tls.arca.test:443 HTTP/1.1\r\nHost: x\r\n"),
      );
      let got = "";
      s.on("data", (d) => {
        got += d;
      });
      s.on("error", () => {});
      s.on("close", () => resolve(got));
    });
    assert.ok(Date.now() - t0 < 4000, `dropped after ${Date.now() - t0} ms`);
    assert.ok(reply === "" || reply.startsWith("HTTP/1.1 408"), reply);
    // A connection that sends nothing at all is dropped too.
    const silent = await new Promise<number>((resolve) => {
      const t = Date.now();
      const s = net.connect(proxyPort, "127.0.0.1");
      s.on("error", () => {});
      s.on("close", () => resolve(Date.now() - t));
    });
    assert.ok(silent < 4000, `silent connection kept ${silent} ms`);

    const huge = await connectVia(
      { port: proxyPort },
      `tls.arca.test:${origin.httpsPort}`,
      `Basic ${"A".repeat(64 * 1024)}`,
    ).catch((err: Error) => ({ status: -1, statusMessage: err.message }));
    assert.ok(huge.status === 431 || huge.status === -1, `huge head: ${huge.status} ${huge.statusMessage}`);
  });

  test("5,000 connections in bounded parallel leak no file descriptors", async () => {
    const auth = basicAuth(cred.username, cred.password);
    const before = openFds();
    const one = async (i: number) => {
      if (i % 3 === 0) {
        const c = await connectVia({ port: proxyPort }, `tls.arca.test:${origin.httpsPort}`, auth);
        assert.equal(c.status, 200);
        c.socket?.destroy();
      } else if (i % 3 === 1) {
        const c = await connectVia({ port: proxyPort }, `127.0.0.1:${origin.httpsPort}`, auth);
        assert.equal(c.status, 403);
      } else {
        await new Promise<void>((resolve, reject) => {
          const req = http.get(
            {
              host: "127.0.0.1",
              port: proxyPort,
              agent: false,
              path: `http://plain.arca.test:${origin.httpPort}/hello`,
              headers: { "Proxy-Authorization": auth },
            },
            (res) => {
              assert.equal(res.statusCode, 200);
              res.resume();
              res.on("end", resolve);
            },
          );
          req.on("error", reject);
        });
      }
    };
    let next = 0;
    await Promise.all(
      Array.from({ length: 64 }, async () => {
        while (next < 5000) await one(next++);
      }),
    );
    // Closes propagate asynchronously; the count must come back to where it was.
    let now = openFds();
    for (let i = 0; i < 50 && now > before + 2; i++) {
      await new Promise((r) => setTimeout(r, 100));
      now = openFds();
    }
    assert.ok(now <= before + 2, `fds before ${before}, after ${now}`);
    const ok = await curl([
      "-sS",
      "--fail",
      "-x",
      proxyUrl(),
      `http://plain.arca.test:${origin.httpPort}/hello`,
    ]);
    assert.equal(ok.code, 0);
  });
});
