import assert from "node:assert/strict";
import { test } from "node:test";
import { SandboxError } from "../errors.js";
import { parseLddOutput, sharedLibraries } from "./shared-libraries.js";

test("parseLddOutput keeps resolved paths and the loader, drops the vdso", () => {
  const out = [
    "\tlinux-vdso.so.1 (0x00007ffd6b1f2000)",
    "\tlibseccomp.so.2 => /lib/x86_64-linux-gnu/libseccomp.so.2 (0x00007f3a1c2d0000)",
    "\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f3a1c0ef000)",
    "\t/lib64/ld-linux-x86-64.so.2 (0x00007f3a1c311000)",
    "",
  ].join("\n");
  assert.deepEqual(parseLddOutput(out), [
    "/lib/x86_64-linux-gnu/libseccomp.so.2",
    "/lib/x86_64-linux-gnu/libc.so.6",
    "/lib64/ld-linux-x86-64.so.2",
  ]);
});

test("parseLddOutput: static binaries have no libraries", () => {
  assert.deepEqual(parseLddOutput("\tnot a dynamic executable\n"), []);
  assert.deepEqual(parseLddOutput("\tstatically linked\n"), []);
});

test("parseLddOutput fails on a missing library", () => {
  assert.throws(
    () => parseLddOutput("\tlibfoo.so.1 => not found\n"),
    (err: unknown) =>
      err instanceof SandboxError && err.code === "assembly_failed" && /libfoo/.test(err.message),
  );
});

test("sharedLibraries of the real runc and busybox", async () => {
  const runcLibs = await sharedLibraries("/usr/sbin/runc");
  assert.ok(
    runcLibs.some((l) => l.endsWith("/libseccomp.so.2")),
    runcLibs.join(" "),
  );
  assert.ok(
    runcLibs.some((l) => l.endsWith("/libc.so.6")),
    runcLibs.join(" "),
  );
  assert.deepEqual(await sharedLibraries("/usr/bin/busybox"), []);
});
