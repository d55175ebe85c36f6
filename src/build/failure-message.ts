import { errorMessage, findArcaError } from "../util/index.js";

/** BuildKit's wording for a failed RUN (executor): `process "<cmd>" did not complete successfully: exit code: N`. */
const PROCESS_RE = /process "((?:[^"\\]|\\.)*)" did not complete successfully: exit code: (\d+)/;

/** The message of the underlying gRPC error (without the Dockerfile excerpt the engine adds). */
function rawMessage(err: unknown): string {
  let cur: unknown = err;
  for (let i = 0; i < 8 && cur; i++) {
    const raw = (cur as { rawMessage?: unknown }).rawMessage;
    if (typeof raw === "string" && raw) return raw;
    cur = (cur as { cause?: unknown }).cause;
  }
  return errorMessage(err);
}

function unquoteGo(s: string): string {
  try {
    return JSON.parse(`"${s}"`) as string;
  } catch {
    return s;
  }
}

/**
 * How a failed build is reported in the stream: a failing RUN carries its exit
 * code; the classic builder's wording is `The command '<cmd>' returned a
 * non-zero code: N` (what scripts grep for), BuildKit's (v2) is its own.
 */
export function buildFailure(err: unknown, classic: boolean): { message: string; code?: number } {
  const raw = rawMessage(err);
  const m = PROCESS_RE.exec(raw);
  if (m) {
    const code = Number(m[2]);
    if (classic) {
      return {
        message: `The command '${unquoteGo(m[1] as string)}' returned a non-zero code: ${code}`,
        code,
      };
    }
    return { message: raw, code };
  }
  const arca = findArcaError(err);
  if (arca?.code === "canceled") return { message: "context canceled" };
  return { message: classic ? errorMessage(err) : raw };
}
