import assert from "node:assert/strict";
import { createReadStream } from "node:fs";
import { copyFile, mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import tar from "tar-stream";
import { ImageStore } from "../src/images/index.js";
import { seedBusybox } from "./support/busybox-rootfs.js";
import { type DaemonProc, startDaemon } from "./support/daemon.js";
import { dockerCli, dockerConfigWithBuildx } from "./support/docker-cli.js";
import { findDockerd, startStockDockerd } from "./support/stock-dockerd.js";
import { startTestRegistry, type TestRegistry } from "./support/test-registry.js";

const TAR = "application/vnd.oci.image.layer.v1.tar";
const GZIP = "application/vnd.oci.image.layer.v1.tar+gzip";
const ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd";
const OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json";
/** What the RUN step below writes: 1 MiB of random bytes (gzip cannot shrink it, so sizes tell). */
const BLOB = 1 << 20;

interface RegistryManifest {
  mediaType: string;
  layers: { mediaType: string; digest: string; size: number }[];
}

// Builds land in the store with uncompressed layers (nothing but the store reads them); everything
// that reads store images works with them and with gzip layers of images made before; whatever
// leaves Arca (--push, -o type=registry, registry cache) is compressed as it asks.
describe("store layers: uncompressed on the way in, compressed on the way out", { timeout: 900_000 }, () => {
  let tmp: string;
  let dataRoot: string;
  let daemon: DaemonProc;
  let store: ImageStore;
  let reg: TestRegistry;
  let env: NodeJS.ProcessEnv;
  let ctxCount = 0;
  const { ok } = dockerCli(() => env);
  const classic = { DOCKER_BUILDKIT: "0" };

  const context = async (lines: string[]): Promise<string> => {
    const dir = path.join(tmp, `ctx-${++ctxCount}`);
    await mkdir(dir, { recursive: true });
    await writeFile(path.join(dir, "Dockerfile"), [...lines, ""].join("\n"));
    return dir;
  };
  const layersOf = async (name: string) => (await store.inspect(name)).Layers;
  const busyboxLayer = async () => (await layersOf("busybox:local"))[0];
  /** A manifest from the test registry, with the media types it was pushed with. */
  const pushedManifest = async (repo: string, tag: string): Promise<RegistryManifest> => {
    const r = await reg.api(`/v2/${repo}/manifests/${tag}`);
    assert.equal(r.status, 200, JSON.stringify(r.body));
    const index = r.body as { manifests?: { digest: string; platform?: { os: string } }[] };
    const image = index.manifests?.find((m) => m.platform?.os !== "unknown");
    return image ? pushedManifest(repo, image.digest) : (r.body as RegistryManifest);
  };

  before(async () => {
    tmp = await mkdtemp(path.join(os.tmpdir(), "arca-store-layers-"));
    dataRoot = path.join(tmp, "data");
    await seedBusybox(dataRoot, tmp);
    // As in egress-registry.test.ts: TLS with a test CA, htpasswd, reached through the egress proxy.
    reg = await startTestRegistry(path.join(tmp, "registry"));
    await writeFile(
      path.join(dataRoot, "egress.json"),
      JSON.stringify({ mode: "audit", hosts: { "registry.arca.test": "127.0.0.1" } }),
    );
    const certs = path.join(dataRoot, "certs.d", reg.host);
    await mkdir(certs, { recursive: true });
    await copyFile(reg.caFile, path.join(certs, "ca.crt"));
    daemon = startDaemon(dataRoot, path.join(tmp, "arca.sock"));
    await daemon.waitFor(/ready in/);
    store = await ImageStore.open(path.join(dataRoot, "images"));
    const dockerConfig = await dockerConfigWithBuildx(path.join(tmp, "docker-config"));
    const auth = Buffer.from(`${reg.user}:${reg.password}`).toString("base64");
    await writeFile(
      path.join(dockerConfig, "config.json"),
      JSON.stringify({ auths: { [reg.host]: { auth } } }),
    );
    env = {
      ...process.env,
      DOCKER_HOST: `unix://${path.join(tmp, "arca.sock")}`,
      DOCKER_CONFIG: dockerConfig,
      BUILDX_CONFIG: path.join(tmp, "buildx-config"),
      BUILDX_BUILDER: "",
    };
  });

  after(async () => {
    if (process.env.ARCA_TEST_DEBUG) console.log(daemon?.output());
    store?.close();
    await daemon?.stop();
    await reg?.stop();
    await rm(tmp, { recursive: true, force: true });
  });

  /** The new layer is a plain tar (OCI media types); the base image's gzip layer is kept as it is. */
  const assertStoredUncompressed = async (name: string) => {
    const info = await store.inspect(name);
    assert.equal(info.MediaType, OCI_MANIFEST);
    const [base, own] = info.Layers;
    assert.equal(base?.digest, (await busyboxLayer())?.digest);
    assert.equal(base?.mediaType, GZIP);
    assert.equal(own?.mediaType, TAR);
    assert.ok((own?.size ?? 0) > BLOB, `an uncompressed layer holds the 1 MiB file: ${own?.size}`);
    // The blob is what the media type says: a tar, not gzip.
    const head = await readHead(store, own?.digest as string);
    assert.notDeepEqual([...head.subarray(0, 2)], [0x1f, 0x8b]);
    assert.equal(head.subarray(257, 262).toString(), "ustar");
  };

  test("classic POST /build and buildx --load store the built layer uncompressed", async () => {
    const ctx = await context(["FROM busybox:local", `RUN head -c ${BLOB} /dev/urandom > /blob`]);
    await ok(["build", "-q", "-t", "layers:classic", ctx], classic);
    await assertStoredUncompressed("layers:classic");
    await ok(["buildx", "build", "--progress=plain", "--no-cache", "--load", "-t", "layers:buildx", ctx]);
    await assertStoredUncompressed("layers:buildx");
  });

  test("docker images, inspect, history and system df report unpacked sizes", async () => {
    const layers = await layersOf("layers:classic");
    const unpacked = layers.reduce((n, l) => n + l.size, 0) - (layers[0]?.size ?? 0);
    const base = JSON.parse((await ok(["image", "inspect", "busybox:local"])).stdout)[0].Size as number;
    const inspect = JSON.parse((await ok(["image", "inspect", "layers:classic"])).stdout)[0];
    assert.equal(inspect.Size, base + unpacked);
    const history = (
      await ok(["history", "--no-trunc", "--format", "{{.Size}}|{{.CreatedBy}}", "layers:classic"])
    ).stdout;
    assert.match(history, /^1\.05MB\|.*head -c 1048576/m);
    const df = JSON.parse(await apiGet(path.join(tmp, "arca.sock"), "/v1.51/system/df")) as {
      Images: { Id: string; Size: number }[];
    };
    assert.equal(df.Images.find((i) => i.Id === inspect.Id)?.Size, inspect.Size);
  });

  test("FROM an Arca-built image (uncompressed layer served by the registry endpoint): classic and buildx", async () => {
    const ctx = await context(["FROM layers:classic", "RUN wc -c < /blob > /size"]);
    await ok(["build", "-q", "-t", "layers:from-classic", ctx], classic);
    await ok([
      "buildx",
      "build",
      "--progress=plain",
      "--no-cache",
      "--load",
      "-t",
      "layers:from-buildx",
      ctx,
    ]);
    const parent = await layersOf("layers:classic");
    for (const name of ["layers:from-classic", "layers:from-buildx"]) {
      const layers = await layersOf(name);
      // The parent's layers are reused as they are, not converted.
      assert.deepEqual(
        layers.slice(0, 2).map((l) => [l.digest, l.mediaType]),
        parent.map((l) => [l.digest, l.mediaType]),
      );
      assert.equal(layers[2]?.mediaType, TAR);
    }
    const out = await ok(
      [
        "build",
        "--no-cache",
        "-t",
        "layers:size",
        await context(["FROM layers:from-classic", "RUN cat /size"]),
      ],
      classic,
    );
    assert.match(out.stdout, new RegExp(`^${BLOB}$`, "m"));
  });

  test("an image with gzip layers (as builds made before) still builds FROM, saves, loads and sizes", async () => {
    const ctx = await context(["FROM busybox:local", `RUN head -c ${BLOB} /dev/urandom > /old`]);
    // An image exporter that asks for gzip gets it: the store keeps what it got, as for older builds.
    await ok([
      "buildx",
      "build",
      "--progress=plain",
      "--output",
      "type=image,name=layers:gzip,compression=gzip,oci-mediatypes=false",
      "--provenance=false",
      ctx,
    ]);
    const layers = await layersOf("layers:gzip");
    assert.equal(layers[1]?.mediaType, "application/vnd.docker.image.rootfs.diff.tar.gzip");
    const head = await readHead(store, layers[1]?.digest as string);
    assert.deepEqual([...head.subarray(0, 2)], [0x1f, 0x8b]);
    const inspect = JSON.parse((await ok(["image", "inspect", "layers:gzip"])).stdout)[0];
    const base = JSON.parse((await ok(["image", "inspect", "busybox:local"])).stdout)[0].Size as number;
    assert.ok(inspect.Size - base > BLOB, `unpacked size, not the gzip blob's: ${inspect.Size - base}`);
    const from = await context(["FROM layers:gzip", "RUN wc -c < /old"]);
    const out = await ok(["build", "--no-cache", "-t", "layers:from-gzip", from], classic);
    assert.match(out.stdout, new RegExp(`^${BLOB}$`, "m"));
    assert.equal((await layersOf("layers:from-gzip"))[1]?.digest, layers[1]?.digest);
  });

  test("docker save writes plain layer tars (of gzip-stored images too); docker load takes them back; stock dockerd loads it", async () => {
    const archive = path.join(tmp, "saved.tar");
    const ids: Record<string, string> = {};
    for (const n of ["layers:classic", "layers:buildx", "layers:gzip"]) {
      ids[n] = (await ok(["image", "inspect", "--format", "{{.Id}}", n])).stdout.trim();
    }
    await ok(["save", "-o", archive, "layers:classic", "layers:buildx", "layers:gzip"]);
    const entries = await tarHeads(archive);
    const manifest = JSON.parse(entries.get("manifest.json")?.toString() ?? "[]") as {
      RepoTags: string[];
      Layers: string[];
    }[];
    const classicEntry = manifest.find((m) => m.RepoTags.includes("layers:classic"));
    const ownLayer = entries.get(classicEntry?.Layers[1] as string);
    assert.equal(ownLayer?.subarray(257, 262).toString(), "ustar", "docker save writes the layer as a tar");
    await ok(["rmi", "layers:size", "layers:from-classic", "layers:from-buildx", "layers:from-gzip"]);
    await ok(["rmi", "layers:classic", "layers:buildx", "layers:gzip"]);
    const loaded = await ok(["load", "-i", archive]);
    for (const n of Object.keys(ids)) assert.match(loaded.stdout, new RegExp(`Loaded image: ${n}`));
    for (const [n, id] of Object.entries(ids)) {
      assert.equal((await ok(["image", "inspect", "--format", "{{.Id}}", n])).stdout.trim(), id);
    }
    // Loaded from the archive: every layer, the busybox base's too, is the plain tar the archive held.
    for (const n of ["layers:classic", "layers:buildx", "layers:gzip"]) {
      const info = await store.inspect(n);
      assert.deepEqual(
        info.Layers.map((l) => [l.mediaType, l.digest]),
        info.RootFS.Layers.map((d) => [TAR, d]),
        n,
      );
    }
    // The gzip image was saved as dockerd saves: plain layer tars, which is what loads back.
    const gzipEntry = manifest.find((m) => m.RepoTags.includes("layers:gzip"));
    for (const l of gzipEntry?.Layers ?? []) {
      assert.equal(entries.get(l)?.subarray(257, 262).toString(), "ustar", `${l} is a plain tar`);
    }
    const from = await context(["FROM layers:classic", "RUN wc -c < /blob"]);
    assert.match((await ok(["build", "--no-cache", from], classic)).stdout, new RegExp(`^${BLOB}$`, "m"));

    // The archive is a docker save archive stock dockerd reads, with the same image IDs.
    const dockerd = await findDockerd();
    assert.ok(dockerd, "dockerd not found: run `bash scripts/setup-tools.sh` (apt-get install docker.io)");
    const stock = startStockDockerd(dockerd, path.join(tmp, "dockerd"));
    try {
      await stock.ready;
      const stockEnv = { DOCKER_HOST: `unix://${stock.socket}` };
      await ok(["load", "-i", archive], stockEnv);
      for (const [n, id] of Object.entries(ids)) {
        const got = await ok(["image", "inspect", "--format", "{{.Id}}", n], stockEnv);
        assert.equal(got.stdout.trim(), id);
      }
    } finally {
      await stock.stop();
    }
  });

  test("buildx --push of layers the store holds uncompressed pushes gzip; compression=zstd is honoured", async () => {
    const ctx = await context(["FROM busybox:local", `RUN head -c ${BLOB} /dev/urandom > /pushed`]);
    await ok(["buildx", "build", "--progress=plain", "--load", "-t", "layers:to-push", ctx]);
    assert.equal((await layersOf("layers:to-push"))[1]?.mediaType, TAR);
    // Same steps, cached: the layers exist uncompressed and must be compressed for the registry.
    await ok(["buildx", "build", "--progress=plain", "--push", "-t", `${reg.host}/app:gzip`, ctx]);
    const gz = await pushedManifest("app", "gzip");
    assert.deepEqual(
      gz.layers.map((l) =>
        l.mediaType.replace("vnd.docker.image.rootfs.diff.tar.gzip", "vnd.oci.image.layer.v1.tar+gzip"),
      ),
      [GZIP, GZIP],
    );
    assert.ok((gz.layers[1]?.size ?? 0) > BLOB, "random bytes do not shrink");
    assert.notEqual(gz.layers[1]?.digest, (await layersOf("layers:to-push"))[1]?.digest);
    await ok([
      "buildx",
      "build",
      "--progress=plain",
      "--output",
      `type=registry,name=${reg.host}/app:zstd,compression=zstd`,
      ctx,
    ]);
    const zstd = await pushedManifest("app", "zstd");
    assert.deepEqual(
      zstd.layers.map((l) => l.mediaType),
      [ZSTD, ZSTD],
    );
  });

  test("registry cache export compresses layers the store holds uncompressed; import after prune is cached", async () => {
    const ctx = await context(["FROM busybox:local", `RUN head -c ${BLOB} /dev/urandom > /cached`]);
    await ok(["buildx", "build", "--progress=plain", "--load", "-t", "layers:cache", ctx]);
    const ref = `${reg.host}/cache:1`;
    await ok(["buildx", "build", "--progress=plain", "--cache-to", `type=registry,ref=${ref},mode=max`, ctx]);
    const cache = await pushedManifest("cache", "1");
    assert.ok(cache.layers.length >= 1);
    for (const l of cache.layers) {
      if (l.mediaType.includes("layer")) assert.match(l.mediaType, /gzip/);
    }
    await ok(["builder", "prune", "-af"]);
    await ok([
      "buildx",
      "build",
      "--progress=plain",
      "--cache-from",
      `type=registry,ref=${ref}`,
      "--load",
      "-t",
      "layers:cache-import",
      ctx,
    ]);
    // The RUN step wrote random bytes: the same layer means it came from the cache, not a new run.
    const diffIds = async (n: string) => (await store.inspect(n)).RootFS.Layers;
    assert.deepEqual(await diffIds("layers:cache-import"), await diffIds("layers:cache"));
  });
});

/** The first 512 bytes of a stored blob. */
async function readHead(store: ImageStore, digest: string): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of store.content.createReadStream(digest, { start: 0, end: 511 }))
    chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

/** Every regular file of a tar archive: small ones whole, big ones their first 512 bytes. */
async function tarHeads(file: string): Promise<Map<string, Buffer>> {
  const out = new Map<string, Buffer>();
  const extract = tar.extract();
  createReadStream(file).pipe(extract);
  for await (const entry of extract) {
    const chunks: Buffer[] = [];
    let n = 0;
    for await (const c of entry as AsyncIterable<Buffer>) {
      if (n < 1 << 16) chunks.push(c);
      n += c.length;
    }
    const all = Buffer.concat(chunks);
    out.set(entry.header.name, n > 1 << 16 ? all.subarray(0, 512) : all);
  }
  return out;
}

/** GET on the daemon's API socket; the body as text. */
function apiGet(socketPath: string, urlPath: string): Promise<string> {
  return new Promise((resolve, reject) => {
    http
      .get({ socketPath, path: urlPath }, (res) => {
        let text = "";
        res.setEncoding("utf8");
        res.on("data", (c: string) => {
          text += c;
        });
        res.on("end", () =>
          res.statusCode === 200 ? resolve(text) : reject(new Error(`${res.statusCode}: ${text}`)),
        );
      })
      .on("error", reject);
  });
}
