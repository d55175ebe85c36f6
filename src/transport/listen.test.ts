import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import {
  chmodSync,
  chownSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { createServer as createHttpServer, get } from "node:http";
import { createServer, type Server } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { listen, parseDialAddress, TransportError } from "./index.js";

const dir = mkdtempSync(join(tmpdir(), "arca-listen-"));
const servers: Server[] = [];
after(() => {
  for (const s of servers) s.close();
  rmSync(dir, { recursive: true, force: true });
});

function server(): Server {
  const s = createServer((c) => {
    c.on("error", () => {}); // the liveness probe hangs up at once
    c.end("hi\n");
  });
  servers.push(s);
  return s;
}

async function readAll(addr: string): Promise<string> {
  const sock = await parseDialAddress(addr).dial();
  let out = "";
  for await (const c of sock) out += c.toString();
  return out;
}

async function rejectsCode(p: Promise<unknown>, code: string): Promise<void> {
  const err = await p.then(
    () => assert.fail("expected rejection"),
    (e: unknown) => e,
  );
  assert.ok(err instanceof TransportError, String(err));
  assert.equal(err.code, code, err.message);
}

/** Leaves a socket file whose owner is dead: listen in a child, SIGKILL it. */
async function staleSocket(path: string): Promise<void> {
  const child = spawn(
    process.execPath,
    ["-e", `require("net").createServer().listen(${JSON.stringify(path)}, () => console.log("up"))`],
    { stdio: ["ignore", "pipe", "inherit"] },
  );
  await once(child.stdout, "data");
  child.kill("SIGKILL");
  await once(child, "exit");
  assert.ok(existsSync(path));
}

describe("listen", () => {
  it("binds tcp port 0 and returns the real address", async () => {
    const addr = await listen("tcp://127.0.0.1:0", server());
    assert.match(addr, /^tcp:\/\/127\.0\.0\.1:\d+$/);
    assert.notEqual(addr, "tcp://127.0.0.1:0");
    assert.equal(await readAll(addr), "hi\n");
  });

  it("binds a unix socket with mode 0660 by default, or the given mode", async () => {
    const p1 = join(dir, "a.sock");
    assert.equal(await listen(`unix://${p1}`, server()), `unix://${p1}`);
    assert.equal(statSync(p1).mode & 0o777, 0o660);
    assert.equal(await readAll(`unix://${p1}`), "hi\n");
    const p2 = join(dir, "b.sock");
    await listen(`unix://${p2}`, server(), { socketMode: 0o600 });
    assert.equal(statSync(p2).mode & 0o777, 0o600);
  });

  it("serves an http.Server too", async () => {
    const s = createHttpServer((_req, res) => res.end("pong"));
    servers.push(s as unknown as Server);
    const path = join(dir, "http.sock");
    await listen(`unix://${path}`, s);
    const body = await new Promise<string>((resolve, reject) => {
      get({ socketPath: path, path: "/_ping" }, (res) => {
        let b = "";
        res.on("data", (c: Buffer) => {
          b += c.toString();
        });
        res.on("end", () => resolve(b));
      }).on("error", reject);
    });
    assert.equal(body, "pong");
  });

  it("replaces a stale socket file left by a dead process", async () => {
    const path = join(dir, "stale.sock");
    await staleSocket(path);
    await listen(`unix://${path}`, server());
    assert.equal(await readAll(`unix://${path}`), "hi\n");
  });

  it("refuses a socket a live process answers on, leaving it working", async () => {
    const path = join(dir, "live.sock");
    await listen(`unix://${path}`, server());
    await rejectsCode(listen(`unix://${path}`, server()), "address_in_use");
    assert.equal(await readAll(`unix://${path}`), "hi\n");
  });

  it("refuses to replace a path that is not a socket", async () => {
    const path = join(dir, "regular-file");
    writeFileSync(path, "keep me");
    await rejectsCode(listen(`unix://${path}`, server()), "address_in_use");
    assert.equal(readFileSync(path, "utf8"), "keep me");
  });

  it("reports a busy tcp port as address_in_use", async () => {
    const addr = await listen("tcp://127.0.0.1:0", server());
    const err = await listen(addr, server()).catch((e: unknown) => e);
    assert.ok(err instanceof TransportError);
    assert.equal(err.code, "address_in_use");
    assert.equal(err.kind, "conflict");
  });

  it("validates the address", async () => {
    await rejectsCode(listen("vsock://3:1", server()), "unsupported");
    await rejectsCode(listen("unix://rel.sock", server()), "invalid_address");
  });
});

describe("listen: socket paths other users own or can replace", () => {
  const NOBODY = 65534;
  const refused = async (p: string, why: RegExp) => {
    const err = await listen(`unix://${p}`, server()).then(
      () => assert.fail(`listened on ${p}`),
      (e: unknown) => e,
    );
    assert.ok(err instanceof TransportError, String(err));
    assert.equal(err.code, "permission_denied");
    assert.match(err.message, /^refusing to listen on /);
    assert.match(err.message, why);
  };

  it("refuses a directory owned by another user", async () => {
    const d = join(dir, "theirs");
    mkdirSync(d);
    chownSync(d, NOBODY, NOBODY);
    await refused(join(d, "arca.sock"), /directory .*theirs belongs to uid 65534/);
    assert.equal(existsSync(join(d, "arca.sock")), false);
  });

  it("refuses an existing socket another user owns, and leaves it there", async () => {
    const d = join(dir, "mine");
    mkdirSync(d);
    const p = join(d, "arca.sock");
    await staleSocket(p);
    chownSync(p, NOBODY, NOBODY);
    await refused(p, /already exists and belongs to uid 65534/);
    assert.equal(statSync(p).uid, NOBODY);
  });

  it("refuses a directory others can write to unless it is sticky (like /tmp)", async () => {
    const open = join(dir, "open");
    mkdirSync(open);
    chmodSync(open, 0o777);
    await refused(join(open, "arca.sock"), /writable by other users and not sticky/);
    const sticky = join(dir, "sticky");
    mkdirSync(sticky);
    chmodSync(sticky, 0o1777);
    assert.equal(await listen(`unix://${join(sticky, "arca.sock")}`, server()), `unix://${sticky}/arca.sock`);
  });
});
