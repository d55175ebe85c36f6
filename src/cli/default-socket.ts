import { chmod, mkdir } from "node:fs/promises";
import path from "node:path";

/** Where root's daemon listens by default: a directory only root can create files in. */
export const ROOT_SOCKET_DIR = "/run/arca";

/**
 * The API socket when no --socket is given. Never a world-writable directory such as /tmp, where any
 * user could create the path first: `/run/arca/arca.sock` for root (the directory created 0755),
 * `$XDG_RUNTIME_DIR/arca.sock` (a per-user 0700 directory) otherwise, else `<data root>/run/arca.sock`.
 */
export async function defaultSocketPath(dataRoot: string): Promise<string> {
  if (process.geteuid?.() === 0) {
    // mkdir leaves an existing directory alone; listen() then checks who owns it.
    const made = await mkdir(ROOT_SOCKET_DIR, { recursive: true, mode: 0o755 });
    if (made) await chmod(ROOT_SOCKET_DIR, 0o755);
    return path.join(ROOT_SOCKET_DIR, "arca.sock");
  }
  const runtimeDir = process.env.XDG_RUNTIME_DIR;
  if (runtimeDir && path.isAbsolute(runtimeDir)) return path.join(runtimeDir, "arca.sock");
  return path.join(dataRoot, "run", "arca.sock");
}
