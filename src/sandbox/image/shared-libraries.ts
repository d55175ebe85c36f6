import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { SandboxError } from "../errors.js";

const execFileAsync = promisify(execFile);

/**
 * Absolute paths of the shared objects `ldd` reports (already the transitive closure, loader included), in
 * ldd's order. Static binaries yield []. Pure: the output of `ldd BINARY` in, paths out.
 */
export function parseLddOutput(output: string): string[] {
  const out: string[] = [];
  for (const raw of output.split("\n")) {
    const line = raw.trim();
    if (line === "" || /not a dynamic executable|statically linked/.test(line)) continue;
    // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" or "/lib64/ld-linux-x86-64.so.2 (0x...)";
    // "linux-vdso.so.1 (0x...)" is provided by the kernel and has no file.
    const arrow = /^(\S+)\s+=>\s+(\S+)?/.exec(line);
    if (arrow) {
      const path = arrow[2];
      if (path === undefined || path === "not") {
        throw new SandboxError("assembly_failed", `shared library ${arrow[1]} not found: ${line}`);
      }
      if (path.startsWith("/")) out.push(path);
      continue;
    }
    const bare = /^(\/\S+)\s+\(0x[0-9a-f]+\)$/.exec(line);
    if (bare?.[1]) out.push(bare[1]);
  }
  return [...new Set(out)];
}

/**
 * Shared objects a host binary loads. `ldd` rather than reading DT_NEEDED by hand: it applies the
 * machine's own search paths and gives the transitive closure (libseccomp -> libc -> loader).
 */
export async function sharedLibraries(binary: string, signal?: AbortSignal): Promise<string[]> {
  try {
    const { stdout } = await execFileAsync("ldd", [binary], { signal, encoding: "utf8" });
    return parseLddOutput(stdout);
  } catch (err) {
    const e = err as { code?: unknown; stdout?: string; stderr?: string; name?: string };
    if (e.name === "AbortError") throw err;
    // ldd exits 1 for static binaries ("not a dynamic executable").
    if (/not a dynamic executable|statically linked/.test(`${e.stdout ?? ""}${e.stderr ?? ""}`)) return [];
    if (e.code === "ENOENT") {
      throw new SandboxError("assembly_failed", "ldd not found: it is needed to find runc's libraries", {
        cause: err,
      });
    }
    throw new SandboxError("assembly_failed", `ldd ${binary} failed: ${(err as Error).message}`, {
      cause: err,
    });
  }
}
