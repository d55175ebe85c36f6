/**
 * The egress proxy's idle bound over real sockets: a CONNECT tunnel or a
 * plain response body where no byte moves either way is closed (and audited
 * as an error) after idleTimeoutMs, whether the upstream never answered,
 * stalled mid-transfer, or never closes a half-closed tunnel; a slow but
 * moving transfer, and a client slow to take what it was sent, are not.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import {
  type EgressAuditRecord,
  type EgressCredential,
  EgressPolicy,
  EgressProxy,
  parseAuditLine,
} from "../src/egress/index.js";
import { basicAuth, connectVia, curl } from "./support/egress-client.js";
import { type HostileRegistry, startHostileRegistry } from "./support/hostile-registry.js";

const IDLE_MS = 1000;

describe("egress idle bound", { timeout: 60_000 }, () => {
  let dir: string;
  let proxy: EgressProxy;
  let proxyPort: number;
  let cred: EgressCredential;
  let auditLog: string;
  let reg: HostileRegistry;
  /** A TCP upstream of the test's own: `onConnection` decides what it does. */
  let upstream: net.Server;
  let upstreamPort: number;
  let onConnection: (s: net.Socket) => void = () => {};
  const upstreamSockets = new Set<net.Socket>();

  const records = async (): Promise<EgressAuditRecord[]> =>
    (await readFile(auditLog, "utf8"))
      .split("\n")
      .map(parseAuditLine)
      .filter((r): r is EgressAuditRecord => r !== undefined);
  const recordFor = async (port: number, since: number): Promise<EgressAuditRecord> => {
    for (let i = 0; i < 50; i++) {
      const r = (await records()).slice(since).find((x) => x.port === port);
      if (r) return r;
      await new Promise((res) => setTimeout(res, 50));
    }
    assert.fail(`no audit record for port ${port}:\n${await readFile(auditLog, "utf8")}`);
  };
  const tunnel = async (port: number) => {
    const c = await connectVia(
      { port: proxyPort },
      `idle.arca.test:${port}`,
      basicAuth(cred.username, cred.password),
    );
    assert.equal(c.status, 200, c.statusMessage);
    return c.socket as net.Socket;
  };
  const closed = (s: net.Socket) =>
    new Promise<number>((resolve) => {
      const t0 = Date.now();
      s.on("error", () => {});
      if (s.destroyed) resolve(0);
      else s.once("close", () => resolve(Date.now() - t0));
    });

  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), "arca-egress-idle-"));
    auditLog = path.join(dir, "egress.log");
    reg = await startHostileRegistry(path.join(dir, "registry"), { plain: true, payloadBytes: 1 << 20 });
    upstream = net.createServer((s) => {
      upstreamSockets.add(s);
      s.once("close", () => upstreamSockets.delete(s));
      s.on("error", () => {});
      onConnection(s);
    });
    // The silent half-closed case needs an upstream that keeps its side open after the client's FIN.
    upstream.on("connection", (s: net.Socket) => s.setKeepAlive(false));
    upstreamPort = await new Promise<number>((r) =>
      upstream.listen({ host: "127.0.0.1", port: 0, allowHalfOpen: true }, () =>
        r((upstream.address() as net.AddressInfo).port),
      ),
    );
    proxy = new EgressProxy({
      policy: EgressPolicy.parse(
        { mode: "audit", hosts: { "idle.arca.test": "127.0.0.1", "hostile.arca.test": "127.0.0.1" } },
        path.join(dir, "egress.json"),
      ),
      auditLogPath: auditLog,
      dialTimeoutMs: 1000,
      responseTimeoutMs: 5000,
      idleTimeoutMs: IDLE_MS,
    });
    proxyPort = (await proxy.listenTcp("127.0.0.1", 0)).port;
    cred = proxy.register({ id: "build-idle", kind: "build", tags: [] });
  });

  after(async () => {
    await proxy?.close();
    for (const s of upstreamSockets) s.destroy();
    await new Promise((r) => upstream?.close(r));
    await reg?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  test("a tunnel to an upstream that accepts and never sends a byte is closed after the bound, audited", async () => {
    const since = (await records()).length;
    const s = await tunnel(reg.silentPort);
    s.write("\x16\x03\x01 a client hello the upstream never answers");
    const ms = await closed(s);
    assert.ok(ms >= IDLE_MS * 0.8 && ms < IDLE_MS * 3, `closed after ${ms} ms`);
    const r = await recordFor(reg.silentPort, since);
    assert.equal(r.decision, "error");
    assert.match(r.error ?? "", /no byte either way for 1 s \(the upstream never answered, or stalled\)/);
  });

  test("a half-closed tunnel whose upstream never closes is closed too (no leak, one record)", async () => {
    onConnection = () => {}; // reads the FIN, keeps its own side open, says nothing
    const since = (await records()).length;
    const s = await tunnel(upstreamPort);
    s.end("bye");
    const ms = await closed(s);
    assert.ok(ms < IDLE_MS * 3, `closed after ${ms} ms`);
    const r = await recordFor(upstreamPort, since);
    assert.equal(r.decision, "error");
    // Written once both of the proxy's sockets are closed: nothing is held any more.
    assert.equal(r.bytesUp, 3);
  });

  test("a slow transfer that keeps moving (a byte every 300 ms for 3 s) is not cut", async () => {
    onConnection = (u) => {
      let n = 0;
      const t = setInterval(() => {
        if (u.destroyed) return clearInterval(t);
        if (++n > 10) {
          clearInterval(t);
          u.end();
        } else u.write(String(n % 10));
      }, 300);
    };
    const since = (await records()).length;
    const s = await tunnel(upstreamPort);
    let got = "";
    s.on("data", (d) => {
      got += d;
    });
    await closed(s);
    assert.equal(got, "1234567890");
    const r = await recordFor(upstreamPort, since);
    assert.equal(r.decision, "allow", r.error);
  });

  test("a client slow to take what it was sent is not the upstream's silence", async () => {
    const blob = randomBytes(32 << 20);
    // Sent once asked, so that none of it arrives with the CONNECT answer (connectVia drops that head).
    onConnection = (u) => u.once("data", () => u.end(blob));
    const s = await tunnel(upstreamPort);
    s.write("go");
    s.pause(); // kernel buffers fill; the proxy's write waits on the client for 2.5 bounds
    await new Promise((r) => setTimeout(r, IDLE_MS * 2.5));
    let bytes = 0;
    s.on("data", (d: Buffer) => {
      bytes += d.length;
    });
    s.resume();
    const since = (await records()).length;
    await closed(s);
    const r = await recordFor(upstreamPort, since);
    assert.equal(r.decision, "allow", r.error);
    assert.equal(bytes, blob.length);
  });

  test("a plain-HTTP body that stalls mid-way is cut after the bound (the client sees a short body)", async () => {
    const since = (await records()).length;
    const payload = reg.images["stall-blob"]?.layers[1];
    const t0 = Date.now();
    const r = await curl([
      "-sS",
      "-x",
      cred.proxyUrl(`127.0.0.1:${proxyPort}`),
      `http://${reg.host}/v2/stall-blob/blobs/${payload?.digest}`,
    ]);
    assert.equal(r.code, 18, r.stderr); // CURLE_PARTIAL_FILE
    assert.ok(Date.now() - t0 < IDLE_MS * 4, `took ${Date.now() - t0} ms`);
    assert.equal(r.bytes, (payload?.size ?? 0) >> 1);
    const rec = await recordFor(reg.port, since);
    assert.equal(rec.decision, "error");
    assert.match(rec.error ?? "", /sent no byte of the body for 1 s \(stalled\)/);
    // A good blob from the same server still flows.
    const good = reg.images.good?.layers[1];
    const ok = await curl([
      "-sS",
      "--fail",
      "-x",
      cred.proxyUrl(`127.0.0.1:${proxyPort}`),
      `http://${reg.host}/v2/good/blobs/${good?.digest}`,
    ]);
    assert.equal(ok.code, 0, ok.stderr);
    assert.equal(`sha256:${ok.sha256}`, good?.digest);
  });
});
