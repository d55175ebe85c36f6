import assert from "node:assert/strict";
import { once } from "node:events";
import { mkdtemp, rm } from "node:fs/promises";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { Router } from "./router.js";
import { createApiServer } from "./server.js";

let dir: string;
let socket: string;
let close: () => Promise<void>;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), "arca-api-server-"));
  socket = join(dir, "api.sock");
  const router = new Router()
    .add("GET", "/_ping", ({ res }) => void res.end("OK"))
    .add("POST", "/upload", async ({ req, res }) => {
      let n = 0;
      for await (const c of req) n += (c as Buffer).length;
      res.end(String(n));
    })
    .add("GET", "/stream", async ({ res }) => {
      res.writeHead(200);
      for (let i = 0; i < 6; i++) {
        res.write(`${i}\n`);
        await sleep(300);
      }
      res.end();
    });
  const server = createApiServer(router, { headersTimeoutMs: 1000 });
  await server.listen(`unix://${socket}`);
  close = () => server.close();
});
after(async () => {
  await close();
  await rm(dir, { recursive: true, force: true });
});

/** Writes the parts with a pause before each; resolves with what the server sent and when it closed (ms). */
async function exchange(
  parts: string[],
  pauseMs: number,
  halfClose = true,
): Promise<{ text: string; closedAfterMs: number }> {
  const s = connect(socket);
  let text = "";
  s.on("data", (d: Buffer) => {
    text += d.toString();
  });
  s.on("error", () => {});
  const t0 = Date.now();
  const closed = once(s, "close");
  await once(s, "connect");
  for (const p of parts) {
    if (s.destroyed) break;
    await sleep(pauseMs);
    if (!s.destroyed) s.write(p);
  }
  if (halfClose && !s.destroyed) s.end();
  await closed;
  return { text, closedAfterMs: Date.now() - t0 };
}

test("a client trickling its headers is cut off", async () => {
  const trickle = [
    "GET /_ping HTTP/1.1\r\n",
    ...Array.from({ length: 40 }, (_, i) => `X-${i}: y\r\n`),
    "\r\n",
  ];
  const r = await exchange(trickle, 150);
  assert.ok(r.closedAfterMs < 4000, `closed after ${r.closedAfterMs} ms`);
  assert.doesNotMatch(r.text, /\r\n\r\nOK/);
});

test("once the headers are in, slow bodies and long responses are not timed", async () => {
  const body = "x".repeat(10);
  const upload = await exchange(
    [
      `POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n`,
      ...body,
    ],
    250,
  );
  assert.match(upload.text, /^HTTP\/1.1 200 OK/);
  assert.match(upload.text, /\r\n\r\n10$/);
  assert.ok(upload.closedAfterMs > 2500);
  const stream = await exchange(["GET /stream HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"], 0, false);
  assert.match(stream.text, /0\n[\s\S]*5\n/);
});
