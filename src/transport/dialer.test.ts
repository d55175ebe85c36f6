import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Duplex } from "node:stream";
import { after, before, describe, it } from "node:test";
import { createServer as createTlsServer, type TLSSocket } from "node:tls";
import { parseDialAddress, TransportError } from "./index.js";

const dir = mkdtempSync(join(tmpdir(), "arca-dial-"));
const servers: Server[] = [];
after(async () => {
  for (const s of servers) s.close();
  rmSync(dir, { recursive: true, force: true });
});

function track<S extends Server>(s: S): S {
  servers.push(s);
  return s;
}

async function listenOn(server: Server, at: string | number): Promise<Server> {
  track(server);
  server.listen(typeof at === "number" ? { host: "127.0.0.1", port: at } : at);
  await once(server, "listening");
  return server;
}

function echo(sock: Socket): void {
  sock.on("error", () => {});
  sock.pipe(sock);
}

async function roundTrip(d: Duplex, text: string): Promise<string> {
  d.write(text);
  let got = "";
  for await (const c of d) {
    got += c.toString();
    if (got.length >= text.length) break;
  }
  d.destroy();
  return got;
}

async function rejectsWith(p: Promise<unknown>, code: string, msg?: RegExp): Promise<TransportError> {
  const err = await p.then(
    () => assert.fail("expected rejection"),
    (e: unknown) => e,
  );
  assert.ok(err instanceof TransportError, `expected TransportError, got ${String(err)}`);
  assert.equal(err.code, code, err.message);
  if (msg) assert.match(err.message, msg);
  return err;
}

function throwsCode(fn: () => unknown, code: string, msg?: RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof TransportError);
    assert.equal(e.code, code, e.message);
    if (msg) assert.match(e.message, msg);
    return true;
  });
}

describe("parseDialAddress validation", () => {
  it("rejects malformed addresses at parse time", () => {
    for (const a of [
      "",
      "localhost:80",
      "http://x:1",
      "unix://relative.sock",
      "unix://",
      "tcp://host",
      "tcp://host:0",
      "tcp://host:70000",
      "tcp://:80",
      "vsock-uds:///a.sock",
      "vsock-uds://rel.sock:5",
      "vsock-uds:///a.sock:x",
      "vsock://3",
      "vsock://3:99999999999",
    ]) {
      throwsCode(() => parseDialAddress(a), "invalid_address");
    }
    const err = (() => {
      try {
        parseDialAddress("ftp://x");
      } catch (e) {
        return e as TransportError;
      }
    })();
    assert.equal(err?.kind, "invalid_argument");
  });

  it("accepts each supported form and keeps the address", () => {
    assert.equal(parseDialAddress("unix:///run/a.sock").address, "unix:///run/a.sock");
    assert.equal(parseDialAddress("tcp://[::1]:8088").address, "tcp://[::1]:8088");
    assert.equal(parseDialAddress("vsock-uds:///run/v.sock:8088").address, "vsock-uds:///run/v.sock:8088");
  });

  it("refuses vsock:// without a bridge, saying one is needed", () => {
    throwsCode(() => parseDialAddress("vsock://3:8088"), "unsupported", /bridge/);
  });

  it("refuses TLS on non-tcp addresses", () => {
    throwsCode(() => parseDialAddress("unix:///a.sock", { tls: {} }), "unsupported");
  });
});

describe("unix and tcp dial", () => {
  it("dials a unix socket", async () => {
    const path = join(dir, "echo.sock");
    await listenOn(createServer(echo), path);
    const sock = await parseDialAddress(`unix://${path}`).dial();
    assert.equal(await roundTrip(sock, "ping"), "ping");
  });

  it("dials tcp", async () => {
    const srv = await listenOn(createServer(echo), 0);
    const { port } = srv.address() as { port: number };
    const sock = await parseDialAddress(`tcp://127.0.0.1:${port}`).dial();
    assert.equal(await roundTrip(sock, "hello tcp"), "hello tcp");
  });

  it("maps a missing socket file to not_found", async () => {
    await rejectsWith(parseDialAddress(`unix://${join(dir, "missing.sock")}`).dial(), "not_found", /ENOENT/);
  });

  it("maps a stale socket file (dead owner) to refused", async () => {
    const path = join(dir, "stale.sock");
    const child = spawn(
      process.execPath,
      ["-e", `require("net").createServer().listen(${JSON.stringify(path)}, () => console.log("up"))`],
      { stdio: ["ignore", "pipe", "inherit"] },
    );
    await once(child.stdout, "data");
    child.kill("SIGKILL");
    await once(child, "exit");
    const err = await rejectsWith(parseDialAddress(`unix://${path}`).dial(), "refused");
    assert.equal(err.kind, "unavailable");
  });

  it("maps a closed tcp port to refused", async () => {
    const srv = await listenOn(createServer(), 0);
    const { port } = srv.address() as { port: number };
    await new Promise((r) => srv.close(r));
    await rejectsWith(parseDialAddress(`tcp://127.0.0.1:${port}`).dial(), "refused");
  });

  it("rejects at once with an already-aborted signal", async () => {
    const path = join(dir, "echo.sock");
    const ac = new AbortController();
    ac.abort();
    const err = await rejectsWith(parseDialAddress(`unix://${path}`).dial(ac.signal), "aborted");
    assert.equal(err.kind, "canceled");
  });
});

describe("tls dial", () => {
  const certDir = join(dir, "pki");
  let key: Buffer;
  let cert: Buffer;
  before(() => {
    // A throwaway self-signed cert valid for localhost and 127.0.0.1; it
    // doubles as its own CA and as the client certificate for mutual TLS.
    execFileSync("mkdir", ["-p", certDir]);
    execFileSync(
      "openssl",
      [
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-days",
        "1",
        "-subj",
        "/CN=localhost",
        "-addext",
        "subjectAltName=DNS:localhost,IP:127.0.0.1",
        "-keyout",
        join(certDir, "key.pem"),
        "-out",
        join(certDir, "cert.pem"),
      ],
      { stdio: "ignore" },
    );
    key = readFileSync(join(certDir, "key.pem"));
    cert = readFileSync(join(certDir, "cert.pem"));
  });

  async function tlsServer(requireClientCert: boolean): Promise<number> {
    const srv = createTlsServer(
      {
        key,
        cert,
        ALPNProtocols: ["h2"],
        ...(requireClientCert ? { requestCert: true, rejectUnauthorized: true, ca: [cert] } : {}),
      },
      (s) => echo(s as unknown as Socket),
    );
    srv.on("tlsClientError", () => {});
    await listenOn(srv as unknown as Server, 0);
    return (srv.address() as { port: number }).port;
  }

  it("negotiates h2 with a trusted CA and echoes", async () => {
    const port = await tlsServer(false);
    const sock = (await parseDialAddress(`tcp://127.0.0.1:${port}`, {
      tls: { ca: join(certDir, "cert.pem") },
    }).dial()) as TLSSocket;
    assert.equal(sock.alpnProtocol, "h2");
    assert.equal(sock.authorized, true);
    assert.equal(await roundTrip(sock, "over tls"), "over tls");
  });

  it("does mutual TLS with serverName override", async () => {
    const port = await tlsServer(true);
    const sock = await parseDialAddress(`tcp://127.0.0.1:${port}`, {
      tls: {
        ca: join(certDir, "cert.pem"),
        cert: join(certDir, "cert.pem"),
        key: join(certDir, "key.pem"),
        serverName: "localhost",
      },
    }).dial();
    assert.equal(await roundTrip(sock, "mtls"), "mtls");
  });

  it("fails verification without the CA", async () => {
    const port = await tlsServer(false);
    await rejectsWith(parseDialAddress(`tcp://127.0.0.1:${port}`, { tls: {} }).dial(), "tls_failed");
  });

  it("reports an unreadable PEM file as tls_config", async () => {
    const port = await tlsServer(false);
    const err = await rejectsWith(
      parseDialAddress(`tcp://127.0.0.1:${port}`, { tls: { ca: join(certDir, "nope.pem") } }).dial(),
      "tls_config",
      /nope\.pem/,
    );
    assert.equal(err.kind, "invalid_argument");
  });

  it("times out and can be aborted while the server never answers the handshake", async () => {
    const silent: Socket[] = [];
    let closed = 0;
    const srv = await listenOn(
      createServer((s) => {
        s.on("error", () => {});
        s.on("close", () => closed++);
        s.resume();
        silent.push(s);
      }),
      0,
    );
    const { port } = srv.address() as { port: number };
    const addr = `tcp://127.0.0.1:${port}`;
    const t0 = Date.now();
    await rejectsWith(
      parseDialAddress(addr, { tls: { ca: join(certDir, "cert.pem") }, connectTimeoutMs: 100 }).dial(),
      "timeout",
    );
    assert.ok(Date.now() - t0 < 2000);
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 50);
    await rejectsWith(
      parseDialAddress(addr, { tls: { ca: join(certDir, "cert.pem") } }).dial(ac.signal),
      "aborted",
    );
    // The dialer destroyed its socket, so the server sees the close.
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(silent.length, 2);
    assert.equal(closed, 2);
  });
});

describe("vsock-uds (hybrid vsock) dial", () => {
  /** A unix-socket server that reads the CONNECT line and answers with reply(). */
  async function muxer(name: string, reply: (line: string, sock: Socket) => void): Promise<string> {
    const path = join(dir, name);
    await listenOn(
      createServer((sock) => {
        sock.on("error", () => {});
        let buf = "";
        const onData = (c: Buffer) => {
          buf += c.toString("latin1");
          const nl = buf.indexOf("\n");
          if (nl < 0) return;
          sock.off("data", onData);
          const rest = buf.slice(nl + 1);
          reply(buf.slice(0, nl), sock);
          if (rest) sock.write(rest);
        };
        sock.on("data", onData);
      }),
      path,
    );
    return path;
  }

  it("sends CONNECT <port>, accepts OK, then carries raw bytes", async () => {
    const lines: string[] = [];
    const path = await muxer("vm1.sock", (line, sock) => {
      lines.push(line);
      sock.write("OK 1073741824\n");
      sock.pipe(sock);
    });
    const sock = await parseDialAddress(`vsock-uds://${path}:8088`).dial();
    assert.equal(await roundTrip(sock, "guest says hi"), "guest says hi");
    assert.deepEqual(lines, ["CONNECT 8088"]);
  });

  it("keeps bytes that arrive in the same chunk after the OK line", async () => {
    const path = await muxer("vm2.sock", (_line, sock) => {
      sock.write("OK 5\nEARLY-BYTES");
      sock.pipe(sock);
    });
    const sock = await parseDialAddress(`vsock-uds://${path}:5`).dial();
    let got = "";
    for await (const c of sock) {
      got += c.toString();
      if (got.length >= "EARLY-BYTES".length) break;
    }
    assert.equal(got, "EARLY-BYTES");
    sock.destroy();
  });

  it("fails clearly when the muxer answers something else", async () => {
    const path = await muxer("vm3.sock", (_line, sock) => sock.end("Connection refused by VMM\n"));
    await rejectsWith(
      parseDialAddress(`vsock-uds://${path}:9`).dial(),
      "handshake_failed",
      /"Connection refused by VMM"/,
    );
  });

  it("fails clearly when the muxer hangs up without a reply", async () => {
    const path = await muxer("vm4.sock", (_line, sock) => sock.end());
    await rejectsWith(parseDialAddress(`vsock-uds://${path}:9`).dial(), "handshake_failed", /closed/);
  });

  it("times out the handshake and honours abort", async () => {
    const path = await muxer("vm5.sock", () => {});
    await rejectsWith(
      parseDialAddress(`vsock-uds://${path}:9`, { handshakeTimeoutMs: 80 }).dial(),
      "timeout",
      /CONNECT 9/,
    );
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 30);
    await rejectsWith(parseDialAddress(`vsock-uds://${path}:9`).dial(ac.signal), "aborted");
  });

  it("a given-up handshake keeps its socket open until the muxer answers (no OK into a closed socket)", async () => {
    // vhost-device-vsock 0.3.0 panics when its OK meets a socket the host already closed.
    let okWrite: Promise<Error | undefined> | undefined;
    const answer = new Promise<void>((r) => setTimeout(r, 150));
    const path = await muxer("vm6.sock", (_line, sock) => {
      okWrite = answer.then(
        () => new Promise((resolve) => sock.write("OK 9\n", (err) => resolve(err ?? undefined))),
      );
    });
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 30);
    await rejectsWith(parseDialAddress(`vsock-uds://${path}:9`).dial(ac.signal), "aborted");
    await rejectsWith(
      parseDialAddress(`vsock-uds://${path}:9`, { handshakeTimeoutMs: 60 }).dial(),
      "timeout",
      /CONNECT 9/,
    );
    await answer;
    assert.equal(await okWrite, undefined, "the muxer's OK found the host's socket open");
  });

  // vhost-device-vsock's two quirks, reproduced: bytes in the CONNECT line's chunk are dropped,
  // and a host half-close ends the whole connection.
  async function quirkyMuxer(name: string): Promise<string> {
    return muxer(name, (_line, sock) => {
      sock.removeAllListeners("data"); // what came with the CONNECT line is gone
      sock.write("OK 7\n");
      let got = "";
      sock.on("data", (c: Buffer) => {
        got += c.toString();
        // The guest's reply takes a round trip: a FIN seen meanwhile has already ended the connection.
        if (got.endsWith("\n")) setTimeout(() => sock.destroyed || sock.write(`echo:${got}`), 30);
      });
      sock.once("end", () => sock.destroy());
    });
  }

  it("writes nothing with or after CONNECT before the OK: the first bytes reach the guest", async () => {
    const path = await quirkyMuxer("vm7.sock");
    const sock = await parseDialAddress(`vsock-uds://${path}:7`).dial();
    const reply = once(sock, "data");
    sock.write("preface\n");
    const [got] = (await reply) as [Buffer];
    assert.equal(got.toString(), "echo:preface\n");
    sock.destroy();
  });

  it("never half-closes: end() after a request still gets the guest's reply", async () => {
    const path = await quirkyMuxer("vm8.sock");
    const sock = await parseDialAddress(`vsock-uds://${path}:7`).dial();
    const reply = Promise.race([
      once(sock, "data"),
      once(sock, "close").then(() => [Buffer.from("(closed)")]),
    ]);
    sock.end("last words\n");
    const [got] = (await reply) as [Buffer];
    assert.equal(got.toString(), "echo:last words\n");
    sock.destroy();
  });

  it("maps a missing muxer socket to not_found", async () => {
    await rejectsWith(parseDialAddress(`vsock-uds://${join(dir, "no-vm.sock")}:1`).dial(), "not_found");
  });
});

describe("vsock via bridge", () => {
  it("asks the bridge for a unix path and dials it", async () => {
    const path = join(dir, "bridge-3-8088.sock");
    await listenOn(createServer(echo), path);
    const asked: Array<[number, number]> = [];
    const dialer = parseDialAddress("vsock://3:8088", {
      vsockBridge: {
        unixPathFor: async (cid, port) => {
          asked.push([cid, port]);
          return path;
        },
      },
    });
    assert.equal(await roundTrip(await dialer.dial(), "via bridge"), "via bridge");
    assert.deepEqual(asked, [[3, 8088]]);
  });

  it("maps a bridge failure through the errno mapper", async () => {
    const dialer = parseDialAddress("vsock://3:8088", {
      vsockBridge: {
        unixPathFor: async () => {
          throw Object.assign(new Error("connect ECONNREFUSED"), { code: "ECONNREFUSED" });
        },
      },
    });
    await rejectsWith(dialer.dial(), "refused", /vsock bridge/);
  });
});
