import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdir, symlink } from "node:fs/promises";
import path from "node:path";
import { promisify } from "node:util";
import { tool } from "./tools.js";

const execFileAsync = promisify(execFile);

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** The real docker CLI with `env()` (read at each call) plus per-call additions; `ok` asserts exit 0. */
export function dockerCli(env: () => NodeJS.ProcessEnv): {
  cli(args: string[], extraEnv?: NodeJS.ProcessEnv): Promise<CliResult>;
  ok(args: string[], extraEnv?: NodeJS.ProcessEnv): Promise<CliResult>;
} {
  const cli = async (args: string[], extraEnv: NodeJS.ProcessEnv = {}): Promise<CliResult> => {
    try {
      const r = await execFileAsync("docker", args, {
        env: { ...env(), ...extraEnv },
        maxBuffer: 64 << 20,
        timeout: 300_000,
      });
      return { code: 0, stdout: r.stdout, stderr: r.stderr };
    } catch (err) {
      const e = err as { code?: number; stdout?: string; stderr?: string };
      return {
        code: typeof e.code === "number" ? e.code : 1,
        stdout: e.stdout ?? "",
        stderr: e.stderr ?? "",
      };
    }
  };
  const ok = async (args: string[], extraEnv: NodeJS.ProcessEnv = {}): Promise<CliResult> => {
    const r = await cli(args, extraEnv);
    assert.equal(r.code, 0, `docker ${args.join(" ")} failed:\n${r.stdout}\n${r.stderr}`);
    return r;
  };
  return { cli, ok };
}

/** A docker config dir of the test's own with the set-up's buildx plugin (never ~/.docker). */
export async function dockerConfigWithBuildx(dir: string): Promise<string> {
  await mkdir(path.join(dir, "cli-plugins"), { recursive: true });
  await symlink(tool("docker-buildx"), path.join(dir, "cli-plugins", "docker-buildx"));
  return dir;
}
