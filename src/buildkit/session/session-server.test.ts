import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import http2 from "node:http2";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { test } from "node:test";
import { Health } from "../gen/grpc/health/v1/health_pb.js";
import { FileSync } from "../gen/moby/filesync/v1/filesync_pb.js";
import { attachable } from "./attachable.js";
import { createFileSyncService } from "./filesync/index.js";
import { createHealthService } from "./health.js";
import { createSessionServer } from "./session.js";

/** One unary gRPC call with raw node:http2; returns grpc-status and the response bytes. */
function call(sock: string, pathName: string, body: Uint8Array): Promise<{ status: string; data: Buffer }> {
  return new Promise((resolve, reject) => {
    const client = http2.connect("http://localhost", { createConnection: () => net.connect(sock) });
    client.on("error", reject);
    const req = client.request({
      ":method": "POST",
      ":path": pathName,
      "content-type": "application/grpc",
      te: "trailers",
    });
    const chunks: Buffer[] = [];
    let status = "";
    req.on("response", (h) => {
      if (h["grpc-status"] !== undefined) status = String(h["grpc-status"]);
    });
    req.on("trailers", (t) => {
      status = String(t["grpc-status"]);
    });
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      client.close();
      resolve({ status, data: Buffer.concat(chunks) });
    });
    const frame = Buffer.alloc(5);
    frame.writeUInt32BE(body.length, 1);
    req.end(Buffer.concat([frame, body]));
  });
}

test("session server: Health answers SERVING, unoffered services are UNIMPLEMENTED, methods advertised", async () => {
  const dir = await mkdtemp(path.join(os.tmpdir(), "arca-session-"));
  const sock = path.join(dir, "s.sock");
  const attachables = [
    attachable(Health, createHealthService()),
    attachable(FileSync, createFileSyncService({ dirs: { context: { path: dir } } })),
  ];
  assert.deepEqual(
    attachables.flatMap((a) => a.methods),
    ["/grpc.health.v1.Health/Check", "/moby.filesync.v1.FileSync/DiffCopy"],
  );
  const server = createSessionServer(attachables);
  // Serve over plain sockets as the session does over its tunnelled stream.
  const listener = net.createServer((s) => server.emit("connection", s));
  await new Promise<void>((r) => listener.listen(sock, r));
  try {
    const health = await call(sock, "/grpc.health.v1.Health/Check", new Uint8Array());
    assert.equal(health.status, "0");
    // HealthCheckResponse{status=SERVING(1)}: field 1 varint 1.
    assert.deepEqual([...health.data.subarray(5)], [0x08, 0x01]);
    const unknown = await call(sock, "/moby.sshforward.v1.SSH/CheckAgent", new Uint8Array());
    assert.equal(unknown.status, "12");
    const secrets = await call(sock, "/moby.buildkit.secrets.v1.Secrets/GetSecret", new Uint8Array());
    assert.equal(secrets.status, "12");
  } finally {
    listener.close();
    server.close();
    await rm(dir, { recursive: true, force: true });
  }
});
