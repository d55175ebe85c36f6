import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import https from "node:https";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { type HostileRegistry, startHostileRegistry } from "./support/hostile-registry.js";

// The hostile registry's own contract (test/support/hostile-registry.ts), checked with a plain
// HTTPS client: the good repository serves a consistent image, each hostile one misbehaves as
// documented. The egress and pull tests rely on both.
describe("hostile registry test server", { timeout: 60_000 }, () => {
  let tmp: string;
  let reg: HostileRegistry;

  interface Got {
    status: number;
    headers: Record<string, string | string[] | undefined>;
    body: Buffer;
    error?: string;
  }
  const get = (p: string, opts: { method?: string; range?: string; timeoutMs?: number } = {}) =>
    new Promise<Got>((resolve) => {
      const chunks: Buffer[] = [];
      const req = https.request(
        {
          host: "127.0.0.1",
          port: reg.port,
          path: p,
          method: opts.method ?? "GET",
          servername: "hostile.arca.test",
          ca: reg.ca,
          agent: false,
          headers: opts.range ? { Range: opts.range } : {},
        },
        (res) => {
          const done = (error?: string) =>
            resolve({
              status: res.statusCode ?? 0,
              headers: res.headers,
              body: Buffer.concat(chunks),
              ...(error ? { error } : {}),
            });
          res.on("data", (c: Buffer) => chunks.push(c));
          res.on("end", () => done());
          res.on("error", (e) => done(e.message));
          res.on("aborted", () => done("aborted"));
        },
      );
      req.setTimeout(opts.timeoutMs ?? 10_000, () => {
        req.destroy();
        resolve({ status: -1, headers: {}, body: Buffer.alloc(0), error: "timeout" });
      });
      req.on("error", (e) => resolve({ status: -1, headers: {}, body: Buffer.alloc(0), error: e.message }));
      req.end();
    });
  const digestOf = (b: Buffer) => `sha256:${createHash("sha256").update(b).digest("hex")}`;

  before(async () => {
    tmp = await mkdtemp(path.join(os.tmpdir(), "arca-hostile-registry-"));
    reg = await startHostileRegistry(tmp, { payloadBytes: 1 << 20, hugeManifestBytes: 8 << 20 });
  });
  after(async () => {
    await reg?.stop();
    await rm(tmp, { recursive: true, force: true });
  });

  test("good: /v2/, manifest by tag and digest, blobs whose bytes match their digests, ranges", async () => {
    assert.equal((await get("/v2/")).status, 200);
    const m = await get("/v2/good/manifests/1");
    assert.equal(m.status, 200);
    assert.equal(digestOf(m.body), reg.images.good?.manifestDigest);
    assert.equal(m.headers["docker-content-digest"], reg.images.good?.manifestDigest);
    const byDigest = await get(`/v2/good/manifests/${reg.images.good?.manifestDigest}`);
    assert.deepEqual(byDigest.body, m.body);
    const manifest = JSON.parse(m.body.toString()) as { layers: { digest: string; size: number }[] };
    for (const l of manifest.layers) {
      const b = await get(`/v2/good/blobs/${l.digest}`);
      assert.equal(b.status, 200);
      assert.equal(digestOf(b.body), l.digest);
      assert.equal(b.body.length, l.size);
    }
    const payload = manifest.layers[1] as { digest: string; size: number };
    const tail = await get(`/v2/good/blobs/${payload.digest}`, { range: "bytes=100-" });
    assert.equal(tail.status, 206);
    assert.equal(tail.body.length, payload.size - 100);
    // Each repository has its own payload layer.
    assert.notEqual(reg.images["bad-digest"]?.layers[1]?.digest, payload.digest);
  });

  test("bad-digest: same length, other bytes", async () => {
    const l = reg.images["bad-digest"]?.layers[1] as { digest: string; size: number };
    const b = await get(`/v2/bad-digest/blobs/${l.digest}`);
    assert.equal(b.status, 200);
    assert.equal(b.body.length, l.size);
    assert.notEqual(digestOf(b.body), l.digest);
  });

  test("huge manifests: HEAD tells the size (and the digest unless -get); GET streams it all", async () => {
    const head = await get("/v2/huge-manifest/manifests/1", { method: "HEAD" });
    assert.equal(Number(head.headers["content-length"]), 8 << 20);
    assert.equal(head.headers["docker-content-digest"], reg.images["huge-manifest"]?.manifestDigest);
    const noDigest = await get("/v2/huge-manifest-get/manifests/1", { method: "HEAD" });
    assert.equal(noDigest.headers["docker-content-digest"], undefined);
    const body = await get("/v2/huge-manifest-get/manifests/1");
    assert.equal(body.body.length, 8 << 20);
    assert.equal(digestOf(body.body), reg.images["huge-manifest-get"]?.manifestDigest);
    JSON.parse(body.body.toString());
  });

  test("redirects: every hop to a new URL", async () => {
    const r = await get("/v2/redirect-manifest/manifests/1?hop=7");
    assert.equal(r.status, 307);
    assert.equal(r.headers.location, "/v2/redirect-manifest/manifests/1?hop=8");
    const l = reg.images["redirect-blob"]?.layers[1]?.digest;
    assert.equal((await get(`/v2/redirect-blob/blobs/${l}`)).status, 307);
    // The config is served right.
    assert.equal(
      (await get(`/v2/redirect-blob/blobs/${reg.images["redirect-blob"]?.config.digest}`)).status,
      200,
    );
  });

  test("never, stall, cut and cut-once", async () => {
    assert.equal((await get("/v2/never-manifest/manifests/1", { timeoutMs: 500 })).error, "timeout");
    const payload = (repo: string) => reg.images[repo]?.layers[1] as { digest: string; size: number };
    assert.equal(
      (await get(`/v2/never-blob/blobs/${payload("never-blob").digest}`, { timeoutMs: 500 })).error,
      "timeout",
    );
    const stalled = await get(`/v2/stall-blob/blobs/${payload("stall-blob").digest}`, { timeoutMs: 1000 });
    assert.equal(stalled.error, "timeout");
    const cut = await get(`/v2/cut-blob/blobs/${payload("cut-blob").digest}`);
    assert.equal(cut.status, 200);
    assert.ok(cut.error, "the cut is an error for the client");
    assert.equal(cut.body.length, payload("cut-blob").size >> 1);
    // A client resuming from the cut never gets past it.
    const resumed = await get(`/v2/cut-blob/blobs/${payload("cut-blob").digest}`, {
      range: `bytes=${cut.body.length}-`,
    });
    assert.equal(resumed.status, 206);
    assert.ok(resumed.error);
    assert.equal(resumed.body.length, 0);
    const once = payload("cut-blob-once");
    const first = await get(`/v2/cut-blob-once/blobs/${once.digest}`);
    assert.ok(first.error);
    const rest = await get(`/v2/cut-blob-once/blobs/${once.digest}`, {
      range: `bytes=${first.body.length}-`,
    });
    assert.equal(rest.status, 206);
    assert.equal(digestOf(Buffer.concat([first.body, rest.body])), once.digest);
    // The silent port accepts and never sends a byte.
    const silent = await new Promise<string>((resolve) => {
      const s = net.connect(reg.silentPort, "127.0.0.1", () => s.write("GET /v2/ HTTP/1.1\r\n\r\n"));
      s.on("data", () => resolve("data"));
      setTimeout(() => {
        s.destroy();
        resolve("silent");
      }, 500);
    });
    assert.equal(silent, "silent");
    assert.ok(reg.requests.some((r) => r.repo === "cut-blob" && r.behaviour === "cut-blob"));
  });
});
