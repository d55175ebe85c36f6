import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { BuildKitError } from "../../errors.js";
import { Health, HealthCheckResponse_ServingStatus } from "../../gen/grpc/health/v1/health_pb.js";
import { Secrets } from "../../gen/moby/buildkit/secrets/v1/secrets_pb.js";
import { startTestServer } from "../filesync/test-server.js";
import { createHealthService } from "../health.js";
import { parseSecretSpec } from "./secret-spec.js";
import { createSecretsService } from "./secrets-service.js";

test("parseSecretSpec follows buildx's --secret syntax", () => {
  assert.deepEqual(parseSecretSpec("id=foo,src=/run/x"), { id: "foo", source: { file: "/run/x" } });
  assert.deepEqual(parseSecretSpec("id=foo,source=/run/x"), { id: "foo", source: { file: "/run/x" } });
  assert.deepEqual(parseSecretSpec("id=tok,env=GH_TOKEN"), { id: "tok", source: { env: "GH_TOKEN" } });
  assert.deepEqual(parseSecretSpec("type=env,id=tok,src=GH_TOKEN"), {
    id: "tok",
    source: { env: "GH_TOKEN" },
  });
  assert.deepEqual(parseSecretSpec("src=/path/to/npmrc"), {
    id: "npmrc",
    source: { file: "/path/to/npmrc" },
  });
  assert.deepEqual(parseSecretSpec('"id=a,b",src=f'), { id: "a,b", source: { file: "f" } });
  process.env.ARCA_TEST_SECRET_ENV = "1";
  assert.deepEqual(parseSecretSpec("id=ARCA_TEST_SECRET_ENV"), {
    id: "ARCA_TEST_SECRET_ENV",
    source: { env: "ARCA_TEST_SECRET_ENV" },
  });
  delete process.env.ARCA_TEST_SECRET_ENV;
  assert.deepEqual(parseSecretSpec("id=ARCA_TEST_SECRET_ENV"), {
    id: "ARCA_TEST_SECRET_ENV",
    source: { file: "ARCA_TEST_SECRET_ENV" },
  });
  for (const bad of ["nokey", "id=x,type=ssh", "id=x,bogus=1", "env=", 'id=x,src="unterminated']) {
    assert.throws(() => parseSecretSpec(bad), BuildKitError, bad);
  }
});

describe("Secrets and Health services", () => {
  let tmp: string;
  let srv: Awaited<ReturnType<typeof startTestServer>>;

  before(async () => {
    tmp = await mkdtemp(path.join(os.tmpdir(), "arca-secrets-"));
    await writeFile(path.join(tmp, "s.txt"), "from-file");
    process.env.ARCA_TEST_SECRET = "from-env";
    srv = await startTestServer((r) => {
      r.service(
        Secrets,
        createSecretsService({
          secrets: {
            f: { file: path.join(tmp, "s.txt") },
            e: { env: "ARCA_TEST_SECRET" },
            v: { value: new TextEncoder().encode("inline") },
            missing: { file: path.join(tmp, "nope") },
          },
        }),
      );
      r.service(Health, createHealthService());
    });
  });
  after(async () => {
    delete process.env.ARCA_TEST_SECRET;
    await srv.close();
    await rm(tmp, { recursive: true, force: true });
  });

  test("GetSecret by id from file, env and value; unknown is NOT_FOUND", async () => {
    const client = createClient(Secrets, srv.transport);
    const get = async (ID: string) => new TextDecoder().decode((await client.getSecret({ ID })).data);
    assert.equal(await get("f"), "from-file");
    assert.equal(await get("e"), "from-env");
    assert.equal(await get("v"), "inline");
    for (const id of ["unknown", "missing", "__proto__"]) {
      await assert.rejects(get(id), (err: unknown) => ConnectError.from(err).code === Code.NotFound, id);
    }
  });

  test("Health/Check answers SERVING", async () => {
    const res = await createClient(Health, srv.transport).check({ service: "" });
    assert.equal(res.status, HealthCheckResponse_ServingStatus.SERVING);
  });
});
