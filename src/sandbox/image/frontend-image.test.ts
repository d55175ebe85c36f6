import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdir, mkdtemp, readFile, realpath, rm, stat, symlink } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { Readable } from "node:stream";
import { after, before, test } from "node:test";
import { promisify } from "node:util";
import tar from "tar-stream";
import { ImageStore, importRootfs } from "../../images/index.js";
import { toolsBin } from "../tools.js";
import {
  assembleFrontendImage,
  FRONTEND_LABELS,
  type FrontendImage,
  loadFrontendImage,
} from "./frontend-image.js";
import { blobPath } from "./oci-layout.js";
import { pinnedBuildkitVersion } from "./repo-files.js";
import { unpackLayoutLayer } from "./test-tools.js";

const execFileAsync = promisify(execFile);

let tmp: string;
let bin: string;
let first: FrontendImage;

before(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), "arca-frontend-image-"));
  bin = path.join(tmp, "bin");
  await mkdir(bin);
  const real = path.join(toolsBin(), "dockerfile-frontend");
  await stat(real).catch(() => {
    throw new Error(`dockerfile-frontend not found in ${toolsBin()}: run \`npm run setup\` first`);
  });
  await symlink(await realpath(real), path.join(bin, "dockerfile-frontend"));
  first = await assembleFrontendImage({ dataRoot: path.join(tmp, "a"), toolsBin: bin, sourceDateEpoch: 0 });
});

after(async () => {
  await rm(tmp, { recursive: true, force: true });
});

/** The pinned BuildKit module's source directory (set-up downloaded it through the Go module proxy). */
async function buildkitModuleDir(): Promise<string> {
  const { stdout } = await execFileAsync(
    "go",
    ["mod", "download", "-json", `github.com/moby/buildkit@${await pinnedBuildkitVersion()}`],
    { cwd: os.tmpdir(), env: { ...process.env, GOFLAGS: "-mod=mod" } },
  );
  return (JSON.parse(stdout) as { Dir: string }).Dir;
}

test("the version is the one the module's built-in frontend reports (X.Y from version.go → X.Y.0)", async () => {
  const dir = await buildkitModuleDir();
  const src = await readFile(path.join(dir, "frontend/dockerfile/version/version.go"), "utf8");
  const declared = /^const version = "(\d+\.\d+(?:\.\d+)?)"$/m.exec(src)?.[1];
  assert.ok(declared, src);
  const expected = declared.split(".").length === 2 ? `${declared}.0` : declared;
  assert.equal(first.version, expected);
  const [major, minor] = expected.split(".");
  assert.deepEqual(first.tags, [
    `docker/dockerfile:${major}`,
    `docker/dockerfile:${major}.${minor}`,
    `docker/dockerfile:${expected}`,
  ]);
});

test("config: upstream's entrypoint and the labels of the module's release Dockerfile", async () => {
  const config = JSON.parse(await readFile(blobPath(first.layoutDir, first.configDigest), "utf8"));
  assert.deepEqual(config.config.Entrypoint, ["/bin/dockerfile-frontend"]);
  assert.deepEqual(config.config.Labels, FRONTEND_LABELS);
  assert.equal(config.os, "linux");
  // The same LABEL lines as the release stage upstream builds its docker/dockerfile images from.
  const dockerfile = await readFile(
    path.join(await buildkitModuleDir(), "frontend/dockerfile/cmd/dockerfile-frontend/Dockerfile"),
    "utf8",
  );
  const release = dockerfile.slice(dockerfile.indexOf("AS release"));
  const upstream = Object.fromEntries(
    [...release.matchAll(/^LABEL ([\w.]+)="([^"]*)"$/gm)].map((m) => [m[1], m[2]]),
  );
  assert.deepEqual(upstream, FRONTEND_LABELS);
  assert.match(release, /^ENTRYPOINT \["\/bin\/dockerfile-frontend"\]$/m);
});

test("the layer holds the frontend binary, which runs and reports the version", async () => {
  const root = path.join(tmp, "rootfs");
  await unpackLayoutLayer(first.layoutDir, root);
  const st = await stat(path.join(root, "bin/dockerfile-frontend"));
  assert.equal(st.mode & 0o777, 0o755);
  const { stdout } = await execFileAsync(path.join(root, "bin/dockerfile-frontend"), ["-version"]);
  assert.match(stdout, new RegExp(` dockerfile/${first.version.replaceAll(".", "\\.")} `));
});

test("reproducible: another data root gives the same digest; an unchanged binary is not read again", async () => {
  const other = await assembleFrontendImage({
    dataRoot: path.join(tmp, "b"),
    toolsBin: bin,
    sourceDateEpoch: 0,
  });
  assert.equal(other.upToDate, false);
  assert.equal(other.manifestDigest, first.manifestDigest);
  const again = await assembleFrontendImage({
    dataRoot: path.join(tmp, "a"),
    toolsBin: bin,
    sourceDateEpoch: 0,
  });
  assert.equal(again.upToDate, true);
  assert.equal(again.manifestDigest, first.manifestDigest);
  assert.equal(again.version, first.version);
  const later = await assembleFrontendImage({
    dataRoot: path.join(tmp, "b"),
    toolsBin: bin,
    sourceDateEpoch: 86400,
  });
  assert.notEqual(later.manifestDigest, first.manifestDigest, "the epoch is an input");
});

test("load: every tag once; a removed tag comes back on the next load, alone", async () => {
  const store = await ImageStore.open(path.join(tmp, "store"));
  try {
    const loaded = await loadFrontendImage(store, first);
    assert.deepEqual(loaded.loaded, first.tags);
    assert.equal(loaded.imageId, first.configDigest);
    for (const tag of first.tags) assert.equal(store.lookupName(`docker.io/${tag}`), first.manifestDigest);
    assert.deepEqual((await loadFrontendImage(store, first)).loaded, [], "nothing changed, nothing loaded");
    const minor = first.tags[1] as string;
    store.untag(minor);
    assert.equal(store.lookupName(`docker.io/${minor}`), undefined);
    assert.deepEqual((await loadFrontendImage(store, first)).loaded, [minor]);
    const inspect = await store.inspect(first.tags[0] as string);
    assert.deepEqual([...inspect.RepoTags].sort(), [...first.tags].sort());
  } finally {
    store.close();
  }
});

test("load: a tag on an older Arca frontend moves; one on an image the user put there stays", async () => {
  const store = await ImageStore.open(path.join(tmp, "store-2"));
  try {
    const older = await assembleFrontendImage({
      dataRoot: path.join(tmp, "c"),
      toolsBin: bin,
      sourceDateEpoch: 3600,
    });
    assert.notEqual(older.manifestDigest, first.manifestDigest);
    assert.deepEqual((await loadFrontendImage(store, older)).loaded, older.tags);
    // The user's own image under the bare-major name (as `docker pull docker/dockerfile:1` would leave).
    const pack = tar.pack();
    pack.entry({ name: "bin/dockerfile-frontend", mode: 0o755 }, "not Arca's");
    pack.finalize();
    const users = await importRootfs(store, Readable.from(pack), { name: first.tags[0] as string });
    const result = await loadFrontendImage(store, first);
    assert.deepEqual(result.kept, [first.tags[0]]);
    assert.deepEqual(result.loaded, first.tags.slice(1));
    assert.equal(store.lookupName(`docker.io/${first.tags[0]}`), users.manifestDigest);
    for (const tag of first.tags.slice(1))
      assert.equal(store.lookupName(`docker.io/${tag}`), first.manifestDigest);
  } finally {
    store.close();
  }
});
