import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { copyFile, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { gunzipSync } from "node:zlib";
import tar from "tar-stream";
import { freePort } from "./support/buildkitd.js";
import { seedBusybox } from "./support/busybox-rootfs.js";
import { type DaemonProc, startDaemon } from "./support/daemon.js";
import { dockerCli, dockerConfigWithBuildx } from "./support/docker-cli.js";
import { startTestRegistry, type TestRegistry } from "./support/test-registry.js";

/** What a `docker save` archive holds, layers compared by their uncompressed bytes. */
async function saveContent(archive: Buffer): Promise<{ config: string; layers: string[] }> {
  const files = new Map<string, Buffer>();
  const extract = tar.extract();
  const done = new Promise<void>((resolve, reject) => {
    extract.on("entry", (h, stream, next) => {
      const chunks: Buffer[] = [];
      stream.on("data", (c: unknown) => chunks.push(c as Buffer));
      stream.on("end", () => {
        files.set(h.name, Buffer.concat(chunks));
        next();
      });
    });
    extract.on("finish", resolve);
    extract.on("error", reject);
  });
  extract.end(archive);
  await done;
  const manifest = JSON.parse((files.get("manifest.json") as Buffer).toString())[0];
  const sha = (b: Buffer) => createHash("sha256").update(b).digest("hex");
  return {
    config: sha(files.get(manifest.Config) as Buffer),
    layers: (manifest.Layers as string[]).map((l) => {
      const b = files.get(l) as Buffer;
      return sha(b[0] === 0x1f && b[1] === 0x8b ? gunzipSync(b) : b);
    }),
  };
}

// docker pull, push and login against distribution's registry: TLS with a test CA in certs.d and
// htpasswd basic auth, and anonymous plain HTTP as an insecure registry; the daemon's own traffic
// goes through the egress policy and is audited as daemon:pull / daemon:push.
describe("registry: docker pull, push and login", { timeout: 900_000 }, () => {
  let tmp: string;
  let dataRoot: string;
  let daemon: DaemonProc;
  let tlsReg: TestRegistry;
  let plainReg: TestRegistry;
  let env: NodeJS.ProcessEnv;
  const { cli, ok } = dockerCli(() => env);

  before(async () => {
    tmp = await mkdtemp(path.join(os.tmpdir(), "arca-registry-"));
    dataRoot = path.join(tmp, "data");
    tlsReg = await startTestRegistry(path.join(tmp, "tls-registry"));
    plainReg = await startTestRegistry(path.join(tmp, "plain-registry"), "plain.arca.test", { plain: true });
    await mkdir(dataRoot, { recursive: true });
    await writeFile(
      path.join(dataRoot, "egress.json"),
      JSON.stringify({
        mode: "audit",
        hosts: {
          "registry.arca.test": "127.0.0.1",
          "plain.arca.test": "127.0.0.1",
          "down.arca.test": "127.0.0.1",
        },
      }),
    );
    const certs = path.join(dataRoot, "certs.d", tlsReg.host);
    await mkdir(certs, { recursive: true });
    await copyFile(tlsReg.caFile, path.join(certs, "ca.crt"));
    await seedBusybox(dataRoot, tmp);
    daemon = startDaemon(dataRoot, path.join(tmp, "arca.sock"), ["--insecure-registry", plainReg.host]);
    await daemon.waitFor(/ready in/);
    env = {
      ...process.env,
      DOCKER_HOST: `unix://${path.join(tmp, "arca.sock")}`,
      DOCKER_CONFIG: await dockerConfigWithBuildx(path.join(tmp, "docker-config")),
      BUILDX_CONFIG: path.join(tmp, "buildx-config"),
      BUILDX_BUILDER: "",
    };
  });

  after(async () => {
    if (process.env.ARCA_TEST_DEBUG) console.log(daemon?.output());
    await daemon?.stop();
    await tlsReg?.stop();
    await plainReg?.stop();
    await rm(tmp, { recursive: true, force: true });
  });

  const blobs = async () => (await readdir(path.join(dataRoot, "images", "blobs", "sha256"))).sort();

  test("build → tag → login → push → rmi → pull: same image ID and docker save bytes (TLS + basic auth)", async () => {
    const ctx = path.join(tmp, "ctx");
    await mkdir(ctx, { recursive: true });
    await writeFile(
      path.join(ctx, "Dockerfile"),
      "FROM busybox:local\nRUN head -c 300000 /dev/urandom > /a.bin\nRUN echo second > /b.txt\n",
    );
    await ok(["build", "-q", "-t", "roundtrip:1", ctx]);
    const name = `${tlsReg.host}/roundtrip:1`;
    await ok(["tag", "roundtrip:1", name]);
    const id = (await ok(["inspect", "-f", "{{.Id}}", "roundtrip:1"])).stdout.trim();
    const before = await saveBytes(name);

    const unauth = await cli(["push", name]);
    assert.notEqual(unauth.code, 0);
    assert.match(unauth.stderr, /unauthorized|authentication required|no basic auth/i);

    const wrong = await loginWith(tlsReg.user, "wrong-password");
    assert.notEqual(wrong.code, 0);
    assert.match(wrong.stderr, /401 Unauthorized/);
    const login = await loginWith(tlsReg.user, tlsReg.password);
    assert.equal(login.code, 0, login.stderr);
    assert.match(login.stdout, /Login Succeeded/);

    const push = await ok(["push", name]);
    assert.match(push.stdout, /The push refers to repository \[registry\.arca\.test:\d+\/roundtrip\]/);
    assert.match(push.stdout, /Pushed/);
    const digest = /1: digest: (sha256:[a-f0-9]{64}) size: \d+/.exec(push.stdout)?.[1];
    assert.ok(digest, push.stdout);
    const tags = await tlsReg.api("/v2/roundtrip/tags/list");
    assert.deepEqual((tags.body as { tags: string[] }).tags, ["1"]);

    const again = await ok(["push", name]);
    assert.match(again.stdout, /Layer already exists/);
    assert.match(again.stdout, new RegExp(`digest: ${digest}`), "a second push sends the same manifest");

    await ok(["rmi", name, "roundtrip:1"]);
    const pull = await ok(["pull", name]);
    assert.match(pull.stdout, /1: Pulling from roundtrip/);
    assert.match(pull.stdout, new RegExp(`Digest: ${digest}`));
    assert.match(pull.stdout, /Status: Downloaded newer image for registry\.arca\.test:\d+\/roundtrip:1/);
    assert.equal((await ok(["inspect", "-f", "{{.Id}}", name])).stdout.trim(), id);
    // Built (plain layers) and pulled (gzip layers) save to the same archive, as with dockerd.
    const after = await saveBytes(name);
    if (!after.equals(before)) assert.deepEqual(await saveContent(after), await saveContent(before));
    assert.ok(after.equals(before), "docker save of the pulled image differs from the built one's");
    const upToDate = await ok(["pull", name]);
    assert.match(upToDate.stdout, /Image is up to date/);

    const byDigest = await ok(["pull", `${tlsReg.host}/roundtrip@${digest}`]);
    assert.match(byDigest.stdout, new RegExp(`Digest: ${digest}`));

    const log = await readFile(path.join(dataRoot, "egress.log"), "utf8");
    assert.match(log, /"client":"daemon:push"[^\n]*"host":"registry\.arca\.test"[^\n]*"decision":"allow"/);
    assert.match(log, /"client":"daemon:pull"[^\n]*"host":"registry\.arca\.test"[^\n]*"decision":"allow"/);
  });

  test("FROM a pulled image is served from the store without the network", async () => {
    const name = `${tlsReg.host}/roundtrip:1`;
    await tlsReg.stop();
    try {
      const ctx = path.join(tmp, "ctx-from");
      await mkdir(ctx, { recursive: true });
      await writeFile(path.join(ctx, "Dockerfile"), `FROM ${name}\nRUN cat /b.txt\n`);
      const r = await ok(["build", "--progress=plain", "--no-cache", ctx]);
      assert.match(r.stderr, /second/);
    } finally {
      tlsReg = await startTestRegistry(path.join(tmp, "tls-registry"));
    }
  });

  test("plain HTTP insecure registry: anonymous push and pull; missing tag is a clear 404", async () => {
    const name = `${plainReg.host}/plain/busybox:1`;
    await ok(["tag", "busybox:local", name]);
    const push = await ok(["push", name]);
    assert.match(push.stdout, /1: digest: sha256:/);
    await ok(["rmi", name]);
    const pull = await ok(["pull", name]);
    assert.match(pull.stdout, /Status: (Downloaded newer image|Image is up to date) for plain\.arca\.test/);
    const missing = await cli(["pull", `${plainReg.host}/plain/busybox:nope`]);
    assert.notEqual(missing.code, 0);
    assert.match(
      missing.stderr,
      /manifest for plain\.arca\.test:\d+\/plain\/busybox:nope not found: manifest unknown/,
    );
  });

  test("docker push -a pushes every tag of the repository; a name without tag pushes :latest", async () => {
    const repo = `${plainReg.host}/alltags/busybox`;
    for (const t of ["a", "b", "latest"]) await ok(["tag", "busybox:local", `${repo}:${t}`]);
    const all = await ok(["push", "--all-tags", repo]);
    for (const t of ["a", "b", "latest"]) assert.match(all.stdout, new RegExp(`^${t}: digest: sha256:`, "m"));
    const tags = await plainReg.api("/v2/alltags/busybox/tags/list");
    assert.deepEqual(((tags.body as { tags: string[] }).tags ?? []).sort(), ["a", "b", "latest"]);
    const untagged = await ok(["push", `${plainReg.host}/alltags/busybox`]);
    assert.match(untagged.stdout, /Using default tag: latest/);
    assert.match(untagged.stdout, /^latest: digest: sha256:/m);
    assert.doesNotMatch(untagged.stdout, /^a: digest/m);
  });

  test("registry down: a clear error and nothing stored", async () => {
    const port = await freePort();
    const before = await blobs();
    const r = await cli(["pull", `down.arca.test:${port}/x:1`]);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, new RegExp(`down\\.arca\\.test:${port}.*(refused|failed)`));
    assert.deepEqual(await blobs(), before);
  });

  test("a host the policy denies: the error names the policy", async () => {
    await writeFile(
      path.join(dataRoot, "egress.json"),
      JSON.stringify({
        mode: "allowlist",
        allow: ["registry.arca.test"],
        hosts: { "plain.arca.test": "127.0.0.1" },
      }),
    );
    daemon.proc.kill("SIGHUP");
    await daemon.waitFor(/egress policy reloaded/);
    const r = await cli(["pull", `${plainReg.host}/plain/busybox:1`]);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /denied by rule "mode allowlist"/);
    assert.match(r.stderr, /egress\.json/);
  });

  async function saveBytes(name: string): Promise<Buffer> {
    const file = path.join(tmp, `save-${Date.now()}.tar`);
    await ok(["save", "-o", file, name]);
    return readFile(file);
  }

  async function loginWith(user: string, password: string) {
    const { spawn } = await import("node:child_process");
    return new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
      const p = spawn("docker", ["login", "-u", user, "--password-stdin", tlsReg.host], { env });
      let stdout = "";
      let stderr = "";
      p.stdout.on("data", (d) => {
        stdout += d;
      });
      p.stderr.on("data", (d) => {
        stderr += d;
      });
      p.on("close", (code) => resolve({ code: code ?? 1, stdout, stderr }));
      p.stdin.end(password);
    });
  }
});
