import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, describe, it } from "node:test";
import { vmExec } from "./vm-exec-client.js";

const dir = mkdtempSync(path.join(tmpdir(), "arca-vm-exec-"));
after(() => rmSync(dir, { recursive: true, force: true }));

function frame(kind: number, payload: Buffer = Buffer.alloc(0)): Buffer {
  const hdr = Buffer.alloc(5);
  hdr[0] = kind;
  hdr.writeUInt32BE(payload.length, 1);
  return Buffer.concat([hdr, payload]);
}

/**
 * A hybrid-vsock muxer with an exec service behind it: answers CONNECT, reads
 * the request line, then hands the rest of the connection to `serve`.
 */
async function fakeGuest(
  name: string,
  serve: (sock: net.Socket, request: Record<string, unknown>, input: () => Buffer) => void,
): Promise<string> {
  const file = path.join(dir, name);
  const server = net.createServer((sock) => {
    let buf = Buffer.alloc(0);
    let stage = 0;
    let request: Record<string, unknown> = {};
    sock.on("data", (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      for (let nl = buf.indexOf(10); stage < 2 && nl >= 0; nl = buf.indexOf(10)) {
        const line = buf.subarray(0, nl).toString();
        buf = buf.subarray(nl + 1);
        if (stage === 0) sock.write(`OK ${line.split(" ")[1]}\n`);
        else {
          request = JSON.parse(line) as Record<string, unknown>;
          serve(sock, request, () => buf);
        }
        stage++;
      }
    });
    sock.on("error", () => {});
  });
  await new Promise<void>((r) => server.listen(file, r));
  after(() => server.close());
  return file;
}

describe("vmExec (the host side of the VM's exec service)", { timeout: 10_000 }, () => {
  it("sends the request, frames stdin and its end, and returns output and exit code", async () => {
    let seen: Record<string, unknown> = {};
    const file = await fakeGuest("ok.sock", (sock, request, input) => {
      seen = request;
      sock.write(frame(1, Buffer.from("out")));
      sock.write(frame(2, Buffer.from("err")));
      const check = setInterval(() => {
        const got = input();
        // stdin "abc" as one frame, then the end-of-stdin frame.
        if (got.equals(Buffer.concat([frame(0, Buffer.from("abc")), frame(1)]))) {
          clearInterval(check);
          const code = Buffer.alloc(4);
          code.writeInt32BE(7);
          sock.write(frame(3, code));
        }
      }, 10);
    });
    const proc = await vmExec(`vsock-uds://${file}:8090`, { cmd: ["cat"], env: ["A=1"], workingDir: "/tmp" });
    proc.stdin.end("abc");
    const text = async (r: NodeJS.ReadableStream) => {
      let s = "";
      for await (const c of r) s += c.toString();
      return s;
    };
    const [out, err, code] = await Promise.all([text(proc.stdout), text(proc.stderr), proc.exitCode]);
    assert.deepEqual([out, err, code], ["out", "err", 7]);
    assert.deepEqual(seen, { cmd: ["cat"], env: ["A=1"], workdir: "/tmp", tty: false, rows: 0, cols: 0 });
  });

  it("a guest that announces a frame beyond the bound ends the exec instead of being buffered", async () => {
    const file = await fakeGuest("huge.sock", (sock) => {
      const hdr = Buffer.alloc(5);
      hdr[0] = 1;
      hdr.writeUInt32BE(0xffffffff, 1);
      sock.write(hdr);
    });
    const proc = await vmExec(`vsock-uds://${file}:8090`, { cmd: ["true"] });
    await assert.rejects(proc.exitCode, /a 4294967295-byte frame from the guest/);
  });

  it("a malformed exit frame ends the exec with an error (never an exception in the daemon)", async () => {
    const file = await fakeGuest("short.sock", (sock) => sock.write(frame(3, Buffer.from([0]))));
    const proc = await vmExec(`vsock-uds://${file}:8090`, { cmd: ["true"] });
    await assert.rejects(proc.exitCode, /a malformed exit frame/);
  });

  it("a start failure in the guest rejects the exit code with its message", async () => {
    const file = await fakeGuest("fail.sock", (sock) => {
      sock.write(frame(4, Buffer.from('exec: "nosuch": executable file not found in $PATH')));
    });
    const proc = await vmExec(`vsock-uds://${file}:8090`, { cmd: ["nosuch"] });
    await assert.rejects(proc.exitCode, /exec in the VM sandbox: exec: "nosuch": executable file not found/);
  });
});
