import { lstat, stat } from "node:fs/promises";
import path from "node:path";
import { TransportError, toTransportError } from "./errors.js";

const S_ISVTX = 0o1000;

/** This process's uid; Node has no geteuid on Windows (Arca listens on unix sockets on Linux only). */
function ownUid(): number {
  return process.geteuid?.() ?? 0;
}

async function statOrUndefined(p: string, follow: boolean) {
  try {
    return follow ? await stat(p) : await lstat(p);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw toTransportError(err, `inspect ${p}`);
  }
}

function refuse(socketPath: string, why: string): TransportError {
  return new TransportError(
    "permission_denied",
    `refusing to listen on ${socketPath}: ${why}; remove it or choose another --socket`,
  );
}

/**
 * A socket path is only safe when nobody else can have put it there or replace it: otherwise another
 * user squats the path before the daemon starts (it then refuses to start, and clients talk to the
 * impostor) or swaps it afterwards. The socket file, if present, must be ours; its directory must be
 * ours or root's, and writable by others only when sticky (like /tmp, where others cannot remove ours).
 */
export async function checkSocketOwnership(socketPath: string, sharedGroup?: number): Promise<void> {
  const me = ownUid();
  const trusted = (uid: number) => uid === me || uid === 0;
  const dir = path.dirname(socketPath);
  for (const follow of [false, true]) {
    const st = await statOrUndefined(dir, follow);
    if (!st) continue;
    if (!trusted(st.uid)) {
      throw refuse(socketPath, `its directory ${dir} belongs to uid ${st.uid}, not to uid ${me} or root`);
    }
    const writableByOthers = st.mode & 0o002 || (st.mode & 0o020 && st.gid !== sharedGroup);
    if (follow && writableByOthers && !(st.mode & S_ISVTX)) {
      throw refuse(socketPath, `its directory ${dir} is writable by other users and not sticky`);
    }
  }
  const existing = await statOrUndefined(socketPath, false);
  if (existing && existing.uid !== me) {
    throw refuse(socketPath, `it already exists and belongs to uid ${existing.uid}, not to uid ${me}`);
  }
}
