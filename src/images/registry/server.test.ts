import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { mkdtemp, readdir, rm } from "node:fs/promises";
import { request } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { writeBusyboxRootfs } from "../../../test/support/busybox-rootfs.js";
import { ImageStore } from "../image-store.js";
import { importRootfs } from "../import-rootfs.js";
import { requestPushGrant, serveGrantSocket } from "./grant-socket.js";
import { createRegistryServer, type RegistryServer } from "./server.js";

let tmp: string;
let store: ImageStore;
let registry: RegistryServer;
const addrs: Record<string, string> = {};

before(async () => {
  tmp = await mkdtemp(join(tmpdir(), "arca-reg-"));
  const rootfs = join(tmp, "rootfs.tar");
  await writeBusyboxRootfs(rootfs);
  store = await ImageStore.open(join(tmp, "images"));
  await importRootfs(store, createReadStream(rootfs), { name: "busybox:local" });
  registry = createRegistryServer(store);
  addrs.unix = await registry.listen(`unix://${join(tmp, "registry.sock")}`);
  addrs.tcp = await registry.listen("tcp://127.0.0.1:0");
});
after(async () => {
  await registry.close();
  store.close();
  await rm(tmp, { recursive: true, force: true });
});

interface Res {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
  json: () => { errors?: { code: string }[]; [k: string]: unknown };
}

function call(
  addr: string,
  method: string,
  path: string,
  opts: { headers?: Record<string, string>; body?: Buffer | string } = {},
): Promise<Res> {
  const target = addr.startsWith("unix://")
    ? { socketPath: addr.slice("unix://".length) }
    : { host: "127.0.0.1", port: Number(new URL(addr.replace("tcp://", "http://")).port) };
  return new Promise((resolve, reject) => {
    const req = request({ ...target, method, path, headers: opts.headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => {
        const body = Buffer.concat(chunks);
        resolve({
          status: res.statusCode ?? 0,
          headers: res.headers,
          body,
          json: () => JSON.parse(String(body)),
        });
      });
      res.on("error", reject);
    });
    req.on("error", reject);
    req.end(opts.body);
  });
}

const sha = (b: Buffer | string) => `sha256:${createHash("sha256").update(b).digest("hex")}`;
const errCode = (r: Res) => r.json().errors?.[0]?.code;

for (const transport of ["unix", "tcp"] as const) {
  describe(`registry over ${transport}`, () => {
    const addr = () => addrs[transport] as string;

    test("bound address is reported", () => {
      assert.match(
        addr(),
        transport === "unix" ? /^unix:\/\/\/.*registry\.sock$/ : /^tcp:\/\/127\.0\.0\.1:\d+$/,
      );
      assert.doesNotMatch(addr(), /:0$/);
    });

    test("GET /v2/ answers with the API version header", async () => {
      const r = await call(addr(), "GET", "/v2/");
      assert.equal(r.status, 200);
      assert.equal(r.headers["docker-distribution-api-version"], "registry/2.0");
      assert.deepEqual(r.json(), {});
    });

    test("pull busybox:local through the docker.io mirror path, by tag and by digest", async () => {
      const img = await store.inspect("busybox:local");
      const byTag = await call(addr(), "GET", "/v2/library/busybox/manifests/local?ns=docker.io", {
        headers: { Accept: "application/vnd.oci.image.manifest.v1+json" },
      });
      assert.equal(byTag.status, 200);
      assert.equal(byTag.headers["content-type"], "application/vnd.oci.image.manifest.v1+json");
      assert.equal(byTag.headers["docker-content-digest"], img.ManifestDigest);
      assert.equal(Number(byTag.headers["content-length"]), byTag.body.length);
      assert.equal(sha(byTag.body), img.ManifestDigest);

      const head = await call(addr(), "HEAD", "/v2/library/busybox/manifests/local?ns=docker.io");
      assert.equal(head.status, 200);
      assert.equal(head.body.length, 0);
      assert.equal(head.headers["content-length"], String(byTag.body.length));

      const byDigest = await call(
        addr(),
        "GET",
        `/v2/library/busybox/manifests/${img.ManifestDigest}?ns=docker.io`,
      );
      assert.deepEqual(byDigest.body, byTag.body);

      const layer = img.Layers[0];
      assert.ok(layer);
      const blob = await call(addr(), "GET", `/v2/library/busybox/blobs/${layer.digest}?ns=docker.io`);
      assert.equal(blob.status, 200);
      assert.equal(sha(blob.body), layer.digest);
      assert.equal(blob.headers["docker-content-digest"], layer.digest);
      const blobHead = await call(addr(), "HEAD", `/v2/library/busybox/blobs/${layer.digest}`);
      assert.equal(blobHead.headers["content-length"], String(layer.size));
      const part = await call(addr(), "GET", `/v2/library/busybox/blobs/${layer.digest}`, {
        headers: { Range: "bytes=10-19" },
      });
      assert.equal(part.status, 206);
      assert.deepEqual(part.body, blob.body.subarray(10, 20));
      assert.equal(part.headers["content-range"], `bytes 10-19/${layer.size}`);
      const bad = await call(addr(), "GET", `/v2/library/busybox/blobs/${layer.digest}`, {
        headers: { Range: `bytes=${layer.size + 5}-` },
      });
      assert.equal(bad.status, 416);
    });

    test("errors have the OCI shape", async () => {
      const cases: [string, string, number, string][] = [
        ["GET", "/v2/library/busybox/manifests/nope?ns=docker.io", 404, "MANIFEST_UNKNOWN"],
        ["HEAD", `/v2/library/busybox/manifests/${sha("x")}`, 404, ""],
        ["GET", `/v2/library/busybox/blobs/${sha("x")}`, 404, "BLOB_UNKNOWN"],
        ["GET", "/v2/library/busybox/blobs/sha256:123", 400, "DIGEST_INVALID"],
        ["GET", "/v2/Library/busybox/manifests/local", 400, "NAME_INVALID"],
        [
          "GET",
          "/v2/library/upl/blobs/uploads/11111111-2222-4333-8444-555555555555",
          404,
          "BLOB_UPLOAD_UNKNOWN",
        ],
        ["POST", "/v2/library/busybox/blobs/uploads/", 403, "DENIED"],
        ["DELETE", "/v2/library/busybox/manifests/local", 405, "UNSUPPORTED"],
        ["GET", "/v2/library/nothing/tags/list", 404, "NAME_UNKNOWN"],
      ];
      const grant = registry.allowPush(["upl:1"]);
      for (const [method, path, status, code] of cases) {
        const r = await call(addr(), method, path);
        assert.equal(r.status, status, `${method} ${path}`);
        if (code) assert.equal(errCode(r), code, `${method} ${path}`);
        assert.equal(r.headers["docker-distribution-api-version"], "registry/2.0");
      }
      grant.release();
    });

    test("push: monolithic, chunked (with a bad offset), mount, manifest by tag, tags/list", async () => {
      const repo = `library/demo-${transport}`;
      const grant = registry.allowPush([`demo-${transport}:1`, `ghcr.io/x/${transport}:2`]);
      const base = await store.inspect("busybox:local");
      const baseLayer = base.Layers[0];
      assert.ok(baseLayer);

      // Config: monolithic POST ?digest=.
      const config = Buffer.from(
        JSON.stringify({
          ...base.ImageConfig,
          created: new Date().toISOString(),
          config: { Cmd: [transport] },
        }),
      );
      const mono = await call(addr(), "POST", `/v2/${repo}/blobs/uploads/?digest=${sha(config)}`, {
        body: config,
        headers: { "Content-Type": "application/octet-stream" },
      });
      assert.equal(mono.status, 201);
      assert.equal(mono.headers["docker-content-digest"], sha(config));
      assert.equal(mono.headers.location, `/v2/${repo}/blobs/${sha(config)}`);
      const wrong = await call(addr(), "POST", `/v2/${repo}/blobs/uploads/?digest=${sha("other")}`, {
        body: "x",
      });
      assert.equal(wrong.status, 400);
      assert.equal(errCode(wrong), "DIGEST_INVALID");

      // A new layer in two PATCH chunks.
      const layer = Buffer.from(`extra layer bytes for ${transport} `.repeat(1000));
      const start = await call(addr(), "POST", `/v2/${repo}/blobs/uploads/`);
      assert.equal(start.status, 202);
      assert.equal(start.headers.range, "0-0");
      const uuid = start.headers["docker-upload-uuid"] as string;
      const loc = start.headers.location as string;
      assert.equal(loc, `/v2/${repo}/blobs/uploads/${uuid}`);
      const half = 5000;
      const p1 = await call(addr(), "PATCH", loc, {
        body: layer.subarray(0, half),
        headers: { "Content-Range": `0-${half - 1}`, "Content-Type": "application/octet-stream" },
      });
      assert.equal(p1.status, 202);
      assert.equal(p1.headers.range, `0-${half - 1}`);
      const badOffset = await call(addr(), "PATCH", loc, {
        body: layer.subarray(half),
        headers: { "Content-Range": `10-${10 + layer.length - half - 1}` },
      });
      assert.equal(badOffset.status, 416);
      assert.equal(badOffset.headers.range, `0-${half - 1}`);
      const p2 = await call(addr(), "PATCH", p1.headers.location as string, {
        body: layer.subarray(half),
        headers: { "Content-Range": `${half}-${layer.length - 1}` },
      });
      assert.equal(p2.status, 202);
      const status = await call(addr(), "GET", loc);
      assert.equal(status.status, 204);
      assert.equal(status.headers.range, `0-${layer.length - 1}`);
      const done = await call(addr(), "PUT", `${loc}?digest=${sha(layer)}`);
      assert.equal(done.status, 201);
      assert.equal(done.headers["docker-content-digest"], sha(layer));
      assert.equal(await store.content.has(sha(layer)), true);

      // PUT with the final chunk in its body.
      const s2 = await call(addr(), "POST", `/v2/${repo}/blobs/uploads/`);
      const tail = Buffer.from(`tail-${transport}`);
      const fin = await call(addr(), "PUT", `${s2.headers.location}?digest=${sha(tail)}`, { body: tail });
      assert.equal(fin.status, 201);

      // Abort an upload.
      const s3 = await call(addr(), "POST", `/v2/${repo}/blobs/uploads/`);
      assert.equal((await call(addr(), "DELETE", s3.headers.location as string)).status, 204);
      assert.equal((await call(addr(), "GET", s3.headers.location as string)).status, 404);

      // Mount: the base layer exists, so nothing crosses; a missing one starts an upload.
      const mount = await call(
        addr(),
        "POST",
        `/v2/${repo}/blobs/uploads/?mount=${baseLayer.digest}&from=library/busybox`,
      );
      assert.equal(mount.status, 201);
      assert.equal(mount.headers["docker-content-digest"], baseLayer.digest);
      const noMount = await call(
        addr(),
        "POST",
        `/v2/${repo}/blobs/uploads/?mount=${sha("absent")}&from=library/busybox`,
      );
      assert.equal(noMount.status, 202);
      assert.ok(noMount.headers["docker-upload-uuid"]);

      const manifest = Buffer.from(
        JSON.stringify({
          schemaVersion: 2,
          mediaType: "application/vnd.oci.image.manifest.v1+json",
          config: {
            mediaType: "application/vnd.oci.image.config.v1+json",
            digest: sha(config),
            size: config.length,
          },
          layers: [
            baseLayer,
            { mediaType: "application/vnd.oci.image.layer.v1.tar", digest: sha(layer), size: layer.length },
          ],
        }),
      );
      const missing = Buffer.from(
        JSON.stringify({
          ...JSON.parse(String(manifest)),
          layers: [{ ...baseLayer, digest: sha("absent") }],
        }),
      );
      const ct = { "Content-Type": "application/vnd.oci.image.manifest.v1+json" };
      const rejected = await call(addr(), "PUT", `/v2/${repo}/manifests/1`, { body: missing, headers: ct });
      assert.equal(rejected.status, 400);
      assert.equal(errCode(rejected), "MANIFEST_BLOB_UNKNOWN");
      const invalid = await call(addr(), "PUT", `/v2/${repo}/manifests/1`, { body: "{}", headers: ct });
      assert.equal(errCode(invalid), "MANIFEST_INVALID");

      const put = await call(addr(), "PUT", `/v2/${repo}/manifests/1`, { body: manifest, headers: ct });
      assert.equal(put.status, 201);
      assert.equal(put.headers["docker-content-digest"], sha(manifest));
      assert.equal(put.headers.location, `/v2/${repo}/manifests/${sha(manifest)}`);
      const name = `demo-${transport}:1`;
      assert.equal(store.resolve(name).image.id, sha(config));
      assert.deepEqual((await store.inspect(name)).RepoTags, [name]);

      const byDigest = await call(addr(), "PUT", `/v2/${repo}/manifests/${sha(manifest)}`, {
        body: manifest,
        headers: ct,
      });
      assert.equal(byDigest.status, 201);
      const lie = await call(addr(), "PUT", `/v2/${repo}/manifests/${sha("x")}`, {
        body: manifest,
        headers: ct,
      });
      assert.equal(errCode(lie), "DIGEST_INVALID");

      const pulled = await call(addr(), "GET", `/v2/${repo}/manifests/1?ns=docker.io`);
      assert.deepEqual(pulled.body, manifest);
      const tags = await call(addr(), "GET", `/v2/${repo}/tags/list`);
      assert.deepEqual(tags.json(), { name: repo, tags: ["1"] });

      // A push to <registry>/ghcr.io/x/y lands under ghcr.io.
      const ghcr = await call(addr(), "PUT", `/v2/ghcr.io/x/${transport}/manifests/2`, {
        body: manifest,
        headers: ct,
      });
      assert.equal(ghcr.status, 201);
      assert.equal(store.resolve(`ghcr.io/x/${transport}:2`).image.id, sha(config));

      // Once the build is over, the same pushes are refused.
      grant.release();
      const late = await call(addr(), "PUT", `/v2/${repo}/manifests/1`, { body: manifest, headers: ct });
      assert.equal(late.status, 403);
      assert.equal(errCode(late), "DENIED");
    });
  });
}

test("uploads leave no stray ingest files behind once finished", async () => {
  const files = await readdir(join(tmp, "images", "ingest"));
  // Only the deliberately unfinished upload from the failed mount of each transport remains.
  assert.equal(files.filter((f) => f.startsWith("blob-")).length, 0);
  assert.equal(files.filter((f) => f.startsWith("upload-")).length, 2);
});

describe("pushes only for builds in flight", () => {
  const ct = { "Content-Type": "application/vnd.oci.image.manifest.v1+json" };

  /** A config blob, a manifest over busybox's layer; the config body is given. */
  async function imageParts(configBody: unknown) {
    const base = await store.inspect("busybox:local");
    const config = Buffer.from(JSON.stringify(configBody));
    const manifest = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: "application/vnd.oci.image.manifest.v1+json",
        config: {
          mediaType: "application/vnd.oci.image.config.v1+json",
          digest: sha(config),
          size: config.length,
        },
        layers: [base.Layers[0]],
      }),
    );
    return { base, config, manifest };
  }

  test("a push to a name no build exports is DENIED and creates nothing", async () => {
    const addr = addrs.unix as string;
    const { config, manifest } = await imageParts({ architecture: "amd64", os: "linux", pwned: true });
    // Another build is in flight: its grant covers its own names only.
    const other = registry.allowPush(["app:1"]);
    try {
      const blob = await call(addr, "POST", `/v2/library/pwned/blobs/uploads/?digest=${sha(config)}`, {
        body: config,
      });
      assert.equal(blob.status, 403);
      assert.equal(errCode(blob), "DENIED");
      assert.equal(await store.content.has(sha(config)), false);
      const chunked = await call(addr, "POST", "/v2/library/pwned/blobs/uploads/");
      assert.equal(chunked.status, 403);
      const put = await call(addr, "PUT", "/v2/library/pwned/manifests/x", { body: manifest, headers: ct });
      assert.equal(put.status, 403);
      assert.equal(errCode(put), "DENIED");
      // Same repository as the build, another tag: still refused.
      const sideTag = await call(addr, "PUT", "/v2/library/app/manifests/2", { body: manifest, headers: ct });
      assert.equal(sideTag.status, 403);
      assert.equal(store.lookupName("docker.io/library/pwned:x"), undefined);
      assert.equal(store.lookupName("docker.io/library/app:2"), undefined);
      // Reads stay open (base image pulls).
      const pull = await call(addr, "GET", "/v2/library/busybox/manifests/local?ns=docker.io");
      assert.equal(pull.status, 200);
    } finally {
      other.release();
    }
  });

  test("a grant ends with its signal; untagged builds get their own by-digest repository", async () => {
    const addr = addrs.unix as string;
    const ac = new AbortController();
    const grant = registry.allowPush([], ac.signal);
    assert.match(grant.danglingPath, /^arca\/dangling\/[a-f0-9]{24}$/);
    const start = await call(addr, "POST", `/v2/${grant.danglingPath}/blobs/uploads/`);
    assert.equal(start.status, 202);
    assert.equal((await call(addr, "DELETE", start.headers.location as string)).status, 204);
    assert.equal((await call(addr, "POST", "/v2/arca/dangling/blobs/uploads/")).status, 403);
    ac.abort();
    assert.equal((await call(addr, "POST", `/v2/${grant.danglingPath}/blobs/uploads/`)).status, 403);
  });

  test("a manifest whose config is null cannot be tagged", async () => {
    const addr = addrs.unix as string;
    const grant = registry.allowPush(["nullcfg:1"]);
    try {
      const { config, manifest } = await imageParts(null);
      const blob = await call(addr, "POST", `/v2/library/nullcfg/blobs/uploads/?digest=${sha(config)}`, {
        body: config,
      });
      assert.equal(blob.status, 201);
      const put = await call(addr, "PUT", "/v2/library/nullcfg/manifests/1", { body: manifest, headers: ct });
      assert.equal(put.status, 400);
      assert.equal(errCode(put), "MANIFEST_INVALID");
      assert.equal(store.lookupName("docker.io/library/nullcfg:1"), undefined);
    } finally {
      grant.release();
    }
  });
});

test("arca build's grant over the daemon's grant socket lasts while its connection is open", async () => {
  const sock = join(tmp, "grants.sock");
  const grants = await serveGrantSocket(registry, sock);
  try {
    const grant = await requestPushGrant(sock, ["cli:1"]);
    const addr = addrs.unix as string;
    const start = await call(addr, "POST", "/v2/library/cli/blobs/uploads/");
    assert.equal(start.status, 202);
    assert.equal((await call(addr, "POST", `/v2/${grant.danglingPath}/blobs/uploads/`)).status, 202);
    grant.release();
    // The daemon sees the close asynchronously.
    let status = 0;
    for (let i = 0; i < 50 && status !== 403; i++) {
      await new Promise((r) => setTimeout(r, 20));
      status = (await call(addr, "POST", "/v2/library/cli/blobs/uploads/")).status;
    }
    assert.equal(status, 403);
    await assert.rejects(requestPushGrant(sock, ["Not A Name"]), /push grant refused/);
  } finally {
    await grants.close();
  }
});
