import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { createReadStream } from "node:fs";
import { copyFile, mkdtemp, open, readdir, readFile, rm, stat, utimes, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { pipeline } from "node:stream/promises";
import { after, before, test } from "node:test";
import { promisify } from "node:util";
import { createGunzip } from "node:zlib";
import tar from "tar-stream";
import { ImageStore } from "../../images/index.js";
import { assembleSandboxImage, type SandboxImage } from "./assemble.js";
import { loadSandboxImage } from "./load.js";
import { blobPath } from "./oci-layout.js";
import { defaultEntrypointPath, pinnedBuildkitVersion } from "./repo-files.js";
import { parseLddOutput } from "./shared-libraries.js";
import { makeTestTools, type TestTools, unpackLayoutLayer } from "./test-tools.js";

const execFileAsync = promisify(execFile);

let tools: TestTools;
let tmp: string;
let first: SandboxImage;
let firstLines: string[];

before(async () => {
  tools = await makeTestTools();
  tmp = await mkdtemp(path.join(os.tmpdir(), "arca-assemble-test-"));
  firstLines = [];
  first = await assembleSandboxImage({
    dataRoot: path.join(tmp, "root-a"),
    toolsBin: tools.bin,
    sourceDateEpoch: 0,
    onProgress: (l) => firstLines.push(l),
  });
});

after(async () => {
  await rm(tmp, { recursive: true, force: true });
  await tools.cleanup();
});

interface TarEntry {
  name: string;
  type: string;
  mode: number;
  uid: number;
  gid: number;
  uname: string;
  gname: string;
  mtime: number;
  size: number;
  linkname: string | null;
  /** Content of small files only. */
  text?: string;
}

/** Lists the gzip layer by streaming it (the blob is ~40 MB). */
async function listLayer(file: string): Promise<TarEntry[]> {
  const entries: TarEntry[] = [];
  const extract = tar.extract();
  const reading = pipeline(createReadStream(file), createGunzip(), extract);
  for await (const entry of extract) {
    const h = entry.header;
    const chunks: Buffer[] = [];
    for await (const c of entry) if ((h.size ?? 0) < 65536) chunks.push(c as Buffer);
    entries.push({
      name: h.name,
      type: h.type ?? "",
      mode: h.mode ?? -1,
      uid: h.uid ?? -1,
      gid: h.gid ?? -1,
      uname: h.uname ?? "",
      gname: h.gname ?? "",
      mtime: h.mtime?.getTime() ?? -1,
      size: h.size ?? 0,
      linkname: h.linkname ?? null,
      ...(chunks.length ? { text: Buffer.concat(chunks).toString("utf8") } : {}),
    });
  }
  await reading;
  return entries;
}

async function readJson<T>(file: string): Promise<T> {
  return JSON.parse(await readFile(file, "utf8")) as T;
}

test("layout: oci-layout, one manifest named arca-buildkit:<version>, progress with size and time", async () => {
  const version = await pinnedBuildkitVersion();
  assert.equal(first.layoutDir, path.join(tmp, "root-a", "buildkit", "oci-layout"));
  assert.equal(first.upToDate, false);
  assert.deepEqual(await readJson(path.join(first.layoutDir, "oci-layout")), { imageLayoutVersion: "1.0.0" });
  const index = await readJson<{ manifests: { digest: string; annotations: Record<string, string> }[] }>(
    path.join(first.layoutDir, "index.json"),
  );
  assert.equal(index.manifests.length, 1);
  assert.equal(index.manifests[0]?.digest, first.manifestDigest);
  assert.deepEqual(index.manifests[0]?.annotations, {
    "org.opencontainers.image.ref.name": `arca-buildkit:${version}`,
  });
  const blobs = (await readdir(path.join(first.layoutDir, "blobs", "sha256"))).sort();
  assert.deepEqual(
    blobs,
    [first.manifestDigest, first.configDigest, first.layerDigest].map((d) => d.slice(7)).sort(),
  );
  const last = firstLines.at(-1) ?? "";
  assert.match(last, /^sandbox image sha256:[a-f0-9]{64} \d+\.\d MB in \d+\.\d s$/);
  assert.ok(firstLines.length >= 3, firstLines.join("\n"));
});

test("same inputs in a fresh data root give the same manifest digest", async () => {
  const second = await assembleSandboxImage({
    dataRoot: path.join(tmp, "root-b"),
    toolsBin: tools.bin,
    sourceDateEpoch: 0,
  });
  assert.equal(second.upToDate, false);
  assert.equal(second.manifestDigest, first.manifestDigest);
  assert.equal(second.layerDigest, first.layerDigest);
  assert.equal(second.configDigest, first.configDigest);
});

test("unchanged inputs on the same data root take the fast path", async () => {
  const layerFile = blobPath(first.layoutDir, first.layerDigest);
  const before = (await stat(layerFile)).mtimeMs;
  const lines: string[] = [];
  const again = await assembleSandboxImage({
    dataRoot: path.join(tmp, "root-a"),
    toolsBin: tools.bin,
    sourceDateEpoch: 0,
    onProgress: (l) => lines.push(l),
  });
  assert.equal(again.upToDate, true);
  assert.equal(again.manifestDigest, first.manifestDigest);
  assert.equal(again.size, first.size);
  assert.ok(again.ms < 50, `fast path took ${again.ms} ms`);
  assert.equal((await stat(layerFile)).mtimeMs, before);
  assert.equal(lines.length, 1);
  assert.match(lines[0] ?? "", /up to date/);
});

test("gzip header is pinned: no mtime, OS byte 255", async () => {
  const fh = await open(blobPath(first.layoutDir, first.layerDigest), "r");
  try {
    const { buffer } = await fh.read(Buffer.alloc(10), 0, 10, 0);
    assert.deepEqual([...buffer], [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 4, 0xff]);
  } finally {
    await fh.close();
  }
});

test("layer: tools, runc's libraries and loader, busybox applets, config files; owner 0, mtime 0", async () => {
  const entries = await listLayer(blobPath(first.layoutDir, first.layerDigest));
  const byName = new Map(entries.map((e) => [e.name.replace(/\/$/, ""), e]));
  const names = entries.map((e) => e.name);
  assert.deepEqual(names, [...names].sort(), "entries are sorted");
  for (const e of entries) {
    assert.equal(e.uid, 0, e.name);
    assert.equal(e.gid, 0, e.name);
    assert.equal(e.uname, "", e.name);
    assert.equal(e.gname, "", e.name);
    assert.equal(e.mtime, 0, e.name);
  }
  const file = (name: string, mode: number) => {
    const e = byName.get(name);
    assert.ok(e, `missing ${name}`);
    assert.equal(e.type, "file", name);
    assert.equal(e.mode, mode, `${name} mode ${e.mode.toString(8)}`);
    return e;
  };
  for (const t of ["buildkitd", "buildctl"]) {
    assert.equal(file(`usr/local/bin/${t}`, 0o755).size, (await stat(path.join(tools.bin, t))).size);
  }
  assert.equal(file("usr/local/bin/arca-proxy", 0o755).size, (await stat(tools.proxyStandIn)).size);
  assert.equal(file("usr/bin/runc", 0o755).size, (await stat("/usr/sbin/runc")).size);
  file("bin/busybox", 0o755);
  assert.equal(byName.get("bin/sh")?.type, "symlink");
  assert.equal(byName.get("bin/sh")?.linkname, "busybox");
  assert.equal(byName.get("bin/usleep")?.linkname, "busybox");

  // Every object ldd names for runc is in the image at the same path (as a file or a symlink to one).
  const { stdout } = await execFileAsync("ldd", ["/usr/sbin/runc"]);
  const libs = parseLddOutput(stdout);
  assert.ok(libs.length >= 3, libs.join(" "));
  for (const lib of libs) assert.ok(byName.has(lib.slice(1)), `missing ${lib}`);
  if (process.arch === "x64") {
    const loader = byName.get("lib64/ld-linux-x86-64.so.2");
    assert.ok(loader && (loader.type === "file" || loader.type === "symlink"), "loader at /lib64");
  }

  const entrypoint = file("entrypoint.sh", 0o755);
  assert.equal(entrypoint.text, await readFile(defaultEntrypointPath(), "utf8"));
  const toml = file("etc/buildkit/buildkitd.toml", 0o644).text ?? "";
  assert.match(toml, /\[registry\."docker\.io"\]\s+mirrors = \["127\.0\.0\.1:5991"\]/);
  assert.match(toml, /\[registry\."127\.0\.0\.1:5991"\]\s+http = true/);
  assert.match(toml, /networkMode = "cni"\s+cniConfigPath = "\/etc\/buildkit\/cni\.conflist"/);
  // The step network: bridge, IPAM and the firewall that leaves steps only the egress port.
  const cni = JSON.parse(file("etc/buildkit/cni.conflist", 0o644).text ?? "{}");
  assert.equal(cni.plugins[0].type, "bridge");
  assert.equal(cni.plugins[0].portIsolation, true);
  assert.match(file("etc/arca/step-firewall.nft", 0o644).text ?? "", /tcp dport 3128 accept/);
  for (const bin of [
    "opt/cni/bin/bridge",
    "opt/cni/bin/host-local",
    "opt/cni/bin/loopback",
    "usr/sbin/nft",
  ]) {
    assert.equal(byName.get(bin)?.type, "file", bin);
  }
  assert.ok(file("etc/ssl/certs/ca-certificates.crt", 0o644).size > 10_000, "the CA bundle");
  assert.match(file("etc/passwd", 0o644).text ?? "", /^root:x:0:0:/);
  assert.match(file("etc/group", 0o644).text ?? "", /^root:x:0:/);
  assert.match(file("etc/hosts", 0o644).text ?? "", /127\.0\.0\.1\s+localhost/);
  const dir = (name: string, mode: number) => {
    const e = byName.get(name);
    assert.equal(e?.type, "directory", name);
    assert.equal(e?.mode, mode, `${name} mode ${e?.mode.toString(8)}`);
  };
  dir("tmp", 0o1777);
  dir("run/arca", 0o755);
  dir("var/lib/buildkit", 0o711);
  dir("proc", 0o555);
  dir("sys", 0o555);
  dir("dev", 0o755);
  dir("root", 0o700);
});

test("config: entrypoint, env, labels, volume, platform, fixed created, one diff_id", async () => {
  const config = await readJson<{
    created: string;
    architecture: string;
    os: string;
    config: {
      Entrypoint: string[];
      Env: string[];
      Labels: Record<string, string>;
      Volumes: Record<string, unknown>;
    };
    rootfs: { diff_ids: string[] };
    history: unknown[];
  }>(blobPath(first.layoutDir, first.configDigest));
  assert.equal(config.created, "1970-01-01T00:00:00Z");
  assert.equal(config.os, "linux");
  assert.equal(config.architecture, process.arch === "x64" ? "amd64" : process.arch);
  assert.deepEqual(config.config.Entrypoint, ["/entrypoint.sh"]);
  assert.ok(config.config.Env.includes("PATH=/usr/local/bin:/usr/bin:/bin"));
  assert.equal(config.config.Labels["com.arca.internal"], "true");
  assert.equal(config.config.Labels["com.arca.role"], "buildkit");
  assert.deepEqual(config.config.Volumes, { "/var/lib/buildkit": {} });
  assert.deepEqual(config.rootfs.diff_ids, [first.diffId]);
  assert.equal(config.history.length, 1);
  const manifest = await readJson<{ layers: { mediaType: string; digest: string; size: number }[] }>(
    blobPath(first.layoutDir, first.manifestDigest),
  );
  assert.deepEqual(manifest.layers, [
    {
      mediaType: "application/vnd.oci.image.layer.v1.tar+gzip",
      digest: first.layerDigest,
      size: (await stat(blobPath(first.layoutDir, first.layerDigest))).size,
    },
  ]);
});

test("the rootfs works: runc (dynamic, with the copied libraries) and buildkitd run under chroot", async () => {
  const rootfs = path.join(tmp, "rootfs");
  await unpackLayoutLayer(first.layoutDir, rootfs);
  const runc = await execFileAsync("chroot", [rootfs, "/usr/bin/runc", "--version"]);
  assert.match(runc.stdout, /runc version/);
  const bk = await execFileAsync("chroot", [rootfs, "/usr/local/bin/buildkitd", "--version"]);
  assert.match(bk.stdout, /buildkitd github.com\/moby\/buildkit v\d/);
  // With the image's PATH, busybox's shell finds the tools buildkitd execs (runc) by name.
  const sh = await execFileAsync("chroot", [
    rootfs,
    "/bin/env",
    "-i",
    "PATH=/usr/local/bin:/usr/bin:/bin",
    "/bin/sh",
    "-c",
    "which runc buildkitd arca-proxy; id -u",
  ]);
  assert.equal(sh.stdout, "/usr/bin/runc\n/usr/local/bin/buildkitd\n/usr/local/bin/arca-proxy\n0\n");
});

test("a changed input re-assembles; an mtime-only change gives the same digest again", async () => {
  const dataRoot = path.join(tmp, "root-a");
  // mtime only: the record no longer matches, the bytes are the same, so is the digest.
  await utimes(tools.proxyStandIn, new Date(), new Date(Date.now() - 60_000));
  const touched = await assembleSandboxImage({ dataRoot, toolsBin: tools.bin, sourceDateEpoch: 0 });
  assert.equal(touched.upToDate, false);
  assert.equal(touched.manifestDigest, first.manifestDigest);

  const entrypoint = path.join(tmp, "entrypoint.sh");
  await copyFile(defaultEntrypointPath(), entrypoint);
  await writeFile(entrypoint, `${await readFile(entrypoint, "utf8")}# changed\n`);
  const changed = await assembleSandboxImage({
    dataRoot,
    toolsBin: tools.bin,
    sourceDateEpoch: 0,
    entrypointPath: entrypoint,
  });
  assert.equal(changed.upToDate, false);
  assert.notEqual(changed.manifestDigest, first.manifestDigest);
  // The old image's blobs are gone from the layout.
  const blobs = await readdir(path.join(changed.layoutDir, "blobs", "sha256"));
  assert.equal(blobs.length, 3);
  assert.ok(!blobs.includes(first.layerDigest.slice(7)));
  assert.equal((await readdir(path.join(dataRoot, "buildkit", "tmp"))).length, 0, "no temp files left");
});

test("loadSandboxImage loads once, then reports loaded=false", async () => {
  const dataRoot = path.join(tmp, "root-b");
  const store = await ImageStore.open(path.join(dataRoot, "images"));
  try {
    const name = `arca-buildkit:${await pinnedBuildkitVersion()}`;
    const layoutDir = path.join(dataRoot, "buildkit", "oci-layout");
    const one = await loadSandboxImage(store, layoutDir, { name });
    assert.equal(one.loaded, true);
    assert.equal(one.manifestDigest, first.manifestDigest);
    assert.equal(one.imageId, first.configDigest);
    assert.equal(one.name, `docker.io/library/${name}`);
    const inspect = await store.inspect(name);
    assert.equal(inspect.Id, first.configDigest);
    assert.deepEqual((inspect.Config as { Entrypoint: string[] }).Entrypoint, ["/entrypoint.sh"]);
    const two = await loadSandboxImage(store, layoutDir, { name });
    assert.deepEqual(two, { ...one, loaded: false });
  } finally {
    store.close();
  }
});

test("aborting an assembly rejects with the reason and leaves no temp files or layout", async () => {
  const dataRoot = path.join(tmp, "root-aborted");
  const ac = new AbortController();
  const reason = new Error("stop now");
  const running = assembleSandboxImage({
    dataRoot,
    toolsBin: tools.bin,
    sourceDateEpoch: 0,
    signal: ac.signal,
  });
  setTimeout(() => ac.abort(reason), 150);
  await assert.rejects(running, (err: unknown) => err === reason || (err as Error).name === "AbortError");
  // The abort may come before the temp dir exists.
  assert.deepEqual(await readdir(path.join(dataRoot, "buildkit", "tmp")).catch(() => []), []);
  await assert.rejects(stat(path.join(dataRoot, "buildkit", "oci-layout", "index.json")), { code: "ENOENT" });
});
