import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { createWriteStream } from "node:fs";
import { chmod, chown, cp, link, mkdir, rm, symlink, utimes, writeFile } from "node:fs/promises";
import path from "node:path";
import { pipeline } from "node:stream/promises";
import { promisify } from "node:util";
import type { SetupStep } from "./case-spec.js";

const run = promisify(execFile);

/** Deterministic pseudo-random bytes (sha256 counter mode), generated in chunks so big files never sit in memory. */
function* pseudoRandom(seed: string, size: number): Generator<Buffer> {
  const CHUNK = 1 << 20;
  let counter = 0;
  for (let left = size; left > 0; ) {
    const n = Math.min(CHUNK, left);
    const buf = Buffer.alloc(n);
    for (let off = 0; off < n; off += 32) {
      createHash("sha256").update(`${seed}:${counter++}`).digest().copy(buf, off);
    }
    yield buf;
    left -= n;
  }
}

function inside(root: string, rel: string): string {
  const p = path.resolve(root, rel);
  if (p !== root && !p.startsWith(`${root}${path.sep}`))
    throw new Error(`setup path escapes the case: ${rel}`);
  return p;
}

async function applyStep(root: string, s: SetupStep): Promise<void> {
  if ("chmod" in s) return chmod(inside(root, s.chmod), Number.parseInt(s.mode, 8));
  if ("chown" in s) return chown(inside(root, s.chown), s.uid, s.gid);
  if ("hardlink" in s) return link(inside(root, s.target), inside(root, s.hardlink));
  if ("symlink" in s) return symlink(s.target, inside(root, s.symlink));
  if ("mkdir" in s) {
    const p = inside(root, s.mkdir);
    await mkdir(p, { recursive: true });
    if (s.mode) await chmod(p, Number.parseInt(s.mode, 8));
    return;
  }
  if ("write" in s) {
    const p = inside(root, s.write);
    await mkdir(path.dirname(p), { recursive: true });
    if (s.size !== undefined) await pipeline(pseudoRandom(s.write, s.size), createWriteStream(p));
    else await writeFile(p, s.content ?? "");
    if (s.mode) await chmod(p, Number.parseInt(s.mode, 8));
    return;
  }
  if ("tree" in s) {
    let dir = inside(root, s.tree);
    for (let d = 0; d < s.depth; d++) {
      dir = path.join(dir, `d${d}`);
      await mkdir(dir, { recursive: true });
      for (let f = 0; f < s.files; f++) await writeFile(path.join(dir, `f${f}.txt`), `${d}/${f}\n`);
    }
    return;
  }
  if ("tar" in s) {
    const flag = { gzip: "-z", bzip2: "-j", xz: "-J" }[s.compress ?? "gzip"];
    const args = [
      "-c",
      "--sort=name",
      "--mtime=@0",
      "-f",
      inside(root, s.tar),
      "-C",
      inside(root, s.from),
      ".",
    ];
    // Numeric owners are kept (the archive is how ownership reaches an ADD); mtimes are fixed.
    if (s.compress) args.splice(1, 0, flag as string);
    await run("tar", args);
    return;
  }
  if ("touch" in s) {
    const t = new Date(s.mtime);
    if (Number.isNaN(t.getTime())) throw new Error(`touch ${s.touch}: bad mtime ${s.mtime}`);
    return utimes(inside(root, s.touch), t, t);
  }
  return rm(inside(root, s.remove), { recursive: true, force: true });
}

/** Applies steps to an already prepared case (a rebuild's edits). */
export async function applySteps(dir: string, steps: SetupStep[]): Promise<void> {
  const root = path.resolve(dir);
  for (const s of steps) await applyStep(root, s);
}

/** Copies a case directory to `dest` and applies its setup steps there (the committed case stays as it is). */
export async function prepareCase(caseDir: string, dest: string, steps: SetupStep[] = []): Promise<void> {
  await cp(caseDir, dest, { recursive: true, preserveTimestamps: true, verbatimSymlinks: true });
  await applySteps(dest, steps);
}
