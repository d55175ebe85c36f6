import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { test } from "node:test";
import { gzipSync } from "node:zlib";
import tar from "tar-stream";
import {
  describeEntry,
  FlatTree,
  flattenLayers,
  type LayerEntry,
  layerEntryFromHeader,
  normalizePath,
} from "./file-tree.js";

const hdr = (h: Partial<tar.Header>): tar.Header => h as tar.Header;

const file = (p: string, sha = p, extra: Partial<LayerEntry> = {}): LayerEntry => ({
  path: p,
  kind: "file",
  mode: 0o644,
  uid: 0,
  gid: 0,
  size: 1,
  sha256: sha,
  ...extra,
});
const dir = (p: string): LayerEntry => ({ path: p, kind: "dir", mode: 0o755, uid: 0, gid: 0, size: 0 });
const mark = (p: string, kind: "whiteout" | "opaque"): LayerEntry => ({
  path: p,
  kind,
  mode: 0,
  uid: 0,
  gid: 0,
  size: 0,
});

test("normalizePath drops ./, leading and trailing slashes", () => {
  assert.equal(normalizePath("./a/b/"), "a/b");
  assert.equal(normalizePath("/a//b/./c"), "a/b/c");
  assert.equal(normalizePath("./"), "");
});

test("layerEntryFromHeader: whiteouts, opaque markers, modes with special bits", () => {
  assert.deepEqual(layerEntryFromHeader(hdr({ name: "a/.wh.b", mode: 0o600 })), {
    path: "a/b",
    kind: "whiteout",
    mode: 0o600,
    uid: 0,
    gid: 0,
    size: 0,
  });
  assert.equal(layerEntryFromHeader(hdr({ name: "a/b/.wh..wh..opq" })).kind, "opaque");
  assert.equal(layerEntryFromHeader(hdr({ name: "a/b/.wh..wh..opq" })).path, "a/b");
  const e = layerEntryFromHeader(hdr({ name: "./bin/x", mode: 0o104755, uid: 3, gid: 4, size: 9 }));
  assert.equal(e.mode, 0o4755);
  assert.equal(e.kind, "file");
  assert.deepEqual(layerEntryFromHeader(hdr({ name: "l", type: "link", linkname: "./bin/x" })).link, "bin/x");
});

test("FlatTree: whiteouts hide lower entries, never the layer's own", () => {
  const t = new FlatTree();
  t.applyLayer([dir("a"), file("a/x"), file("a/y"), dir("b"), file("b/z")]);
  // The marker comes after the new entry in the tar: it still only hides what was below.
  t.applyLayer([file("a/new"), mark("a", "opaque"), mark("b/z", "whiteout"), file("b/w")]);
  assert.deepEqual([...t.finish().keys()], ["a", "a/new", "b", "b/w"]);
});

test("FlatTree: a file replacing a directory removes its subtree; whiteout of a dir removes children", () => {
  const t = new FlatTree();
  t.applyLayer([dir("d"), file("d/x"), dir("e"), file("e/y")]);
  t.applyLayer([file("d"), mark("e", "whiteout")]);
  const tree = t.finish();
  assert.deepEqual([...tree.keys()], ["d"]);
  assert.equal(tree.get("d")?.type, "file");
});

test("FlatTree: hardlinks share content and are grouped; a later copy-up splits them", () => {
  const t = new FlatTree();
  t.applyLayer([file("a", "h1"), { ...mark("b", "whiteout"), kind: "hardlink", link: "a" }, file("c", "h2")]);
  let tree = t.finish();
  assert.deepEqual(tree.get("a")?.hardlinks, ["b"]);
  assert.deepEqual(tree.get("b")?.hardlinks, ["a"]);
  assert.equal(tree.get("b")?.sha256, "h1");
  assert.equal(tree.get("c")?.hardlinks, undefined);
  t.applyLayer([file("b", "h1")]);
  tree = t.finish();
  assert.equal(tree.get("a")?.hardlinks, undefined);
});

test("describeEntry shows what is compared, octal modes with special bits", () => {
  assert.equal(
    describeEntry("bin/x", { type: "file", mode: 0o4755, uid: 1, gid: 2, size: 3, sha256: "ab".repeat(32) }),
    "/bin/x file 4755 1:2 3 abababababababab",
  );
  assert.equal(
    describeEntry("l", { type: "symlink", mode: 0o777, uid: 0, gid: 0, size: 0, link: "t" }),
    "/l symlink 0777 0:0 -> t",
  );
});

test("flattenLayers reads plain and gzipped layer tars", async () => {
  const tmp = await mkdtemp(path.join(os.tmpdir(), "conformance-tree-"));
  try {
    const layer = async (entries: [Partial<tar.Header>, string?][]) => {
      const pack = tar.pack();
      for (const [h, body = ""] of entries) pack.entry(h as tar.Header, body);
      pack.finalize();
      const chunks: Buffer[] = [];
      for await (const c of pack) chunks.push(c as Buffer);
      return Buffer.concat(chunks);
    };
    const l1 = path.join(tmp, "l1");
    const l2 = path.join(tmp, "l2");
    await writeFile(
      l1,
      await layer([
        [{ name: "etc/", type: "directory", mode: 0o755 }],
        [{ name: "etc/a", mode: 0o644 }, "hello"],
      ]),
    );
    await writeFile(
      l2,
      gzipSync(await layer([[{ name: "etc/.wh.a" }], [{ name: "etc/b", type: "symlink", linkname: "a" }]])),
    );
    const tree = await flattenLayers([l1, l2]);
    assert.deepEqual([...tree.keys()], ["etc", "etc/b"]);
    assert.equal(tree.get("etc/b")?.link, "a");
    const one = await flattenLayers([l1]);
    assert.equal(one.get("etc/a")?.size, 5);
    assert.equal(
      one.get("etc/a")?.sha256,
      "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824",
    );
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
});
