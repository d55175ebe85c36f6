import assert from "node:assert/strict";
import { chmod, mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { Auth } from "../../gen/moby/filesync/v1/auth_pb.js";
import { startTestServer } from "../filesync/test-server.js";
import { createAuthService } from "./auth-service.js";

describe("Auth service", () => {
  let tmp: string;
  let srv: Awaited<ReturnType<typeof startTestServer>>;
  let client: ReturnType<typeof createClient<typeof Auth>>;
  const oldPath = process.env.PATH;

  before(async () => {
    tmp = await mkdtemp(path.join(os.tmpdir(), "arca-auth-"));
    const configPath = path.join(tmp, "config.json");
    await writeFile(
      configPath,
      JSON.stringify({
        auths: {
          "https://index.docker.io/v1/": { auth: Buffer.from("hubuser:hubpass").toString("base64") },
          "https://legacy.example.com/v2/": { username: "leg", password: "acy" },
          "tok.example.com": { auth: Buffer.from("ignored:x").toString("base64"), identitytoken: "idtok" },
        },
        credHelpers: {
          "helper.example.com": "arcatest",
          "token.example.com": "arcatest",
          "gone.example.com": "missing",
        },
      }),
    );
    // A fake credential helper on PATH, answering like docker-credential-* do.
    const helper = path.join(tmp, "docker-credential-arcatest");
    await writeFile(
      helper,
      `#!/bin/sh
read host
case "$host" in
  helper.example.com) echo '{"ServerURL":"helper.example.com","Username":"hu","Secret":"hs"}' ;;
  token.example.com) echo '{"ServerURL":"token.example.com","Username":"<token>","Secret":"tk"}' ;;
  *) echo "credentials not found in native keychain"; exit 1 ;;
esac
`,
    );
    await chmod(helper, 0o755);
    process.env.PATH = `${tmp}:${oldPath}`;
    srv = await startTestServer((r) => {
      r.service(
        Auth,
        createAuthService({
          configPath,
          credentials: { "explicit.example.com": { username: "eu", secret: "es" } },
        }),
      );
    });
    client = createClient(Auth, srv.transport);
  });
  after(async () => {
    process.env.PATH = oldPath;
    await srv.close();
    await rm(tmp, { recursive: true, force: true });
  });

  const creds = async (Host: string) => {
    const r = await client.credentials({ Host });
    return { u: r.Username, s: r.Secret };
  };

  test("config.json auths, Docker Hub aliases, identity tokens", async () => {
    assert.deepEqual(await creds("registry-1.docker.io"), { u: "hubuser", s: "hubpass" });
    assert.deepEqual(await creds("docker.io"), { u: "hubuser", s: "hubpass" });
    assert.deepEqual(await creds("legacy.example.com"), { u: "leg", s: "acy" });
    assert.deepEqual(await creds("tok.example.com"), { u: "", s: "idtok" });
  });

  test("explicit credentials, credential helpers, unknown hosts", async () => {
    assert.deepEqual(await creds("explicit.example.com"), { u: "eu", s: "es" });
    assert.deepEqual(await creds("helper.example.com"), { u: "hu", s: "hs" });
    assert.deepEqual(await creds("token.example.com"), { u: "", s: "tk" });
    assert.deepEqual(await creds("gone.example.com"), { u: "", s: "" }, "helper not on PATH");
    assert.deepEqual(await creds("unknown.example.com"), { u: "", s: "" });
  });

  test("token methods are UNIMPLEMENTED so the daemon fetches tokens itself", async () => {
    for (const call of [
      () => client.fetchToken({ Host: "docker.io" }),
      () => client.getTokenAuthority({ Host: "docker.io" }),
      () => client.verifyTokenAuthority({ Host: "docker.io" }),
    ]) {
      await assert.rejects(call, (err: unknown) => ConnectError.from(err).code === Code.Unimplemented);
    }
  });
});
