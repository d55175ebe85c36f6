import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { SandboxError } from "../errors.js";

/**
 * The repository root (where `sandbox-image/` and `scripts/versions.env` live). Searched upwards from this
 * module because its depth differs between src/ and the esbuild bundle in dist/bundle.
 */
export function repoRoot(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 8; i++) {
    if (existsSync(path.join(dir, "sandbox-image", "entrypoint.sh"))) return dir;
    const up = path.dirname(dir);
    if (up === dir) break;
    dir = up;
  }
  throw new SandboxError(
    "repo_file_missing",
    "cannot find sandbox-image/entrypoint.sh above the arca modules",
  );
}

export function defaultEntrypointPath(): string {
  return path.join(repoRoot(), "sandbox-image", "entrypoint.sh");
}

/** BUILDKIT_VERSION from scripts/versions.env, the one place tool versions are pinned. */
export async function pinnedBuildkitVersion(): Promise<string> {
  const file = path.join(repoRoot(), "scripts", "versions.env");
  const text = await readFile(file, "utf8").catch((err: unknown) => {
    throw new SandboxError("repo_file_missing", `cannot read ${file}`, { cause: err });
  });
  const m = /^BUILDKIT_VERSION=["']?([^"'\s]+)/m.exec(text);
  if (!m?.[1]) throw new SandboxError("repo_file_missing", `${file} has no BUILDKIT_VERSION`);
  return m[1];
}
