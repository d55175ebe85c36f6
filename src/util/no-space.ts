/**
 * For a failure caused by a full disk (ENOSPC or SQLITE_FULL anywhere in the cause chain): "no space left on <path>: …",
 * naming the file or directory when the error carries one. Undefined for any other failure.
 */
export function noSpaceMessage(err: unknown): string | undefined {
  for (let e = err, depth = 0; e && depth < 8; e = (e as { cause?: unknown }).cause, depth++) {
    const x = e as NodeJS.ErrnoException;
    // SQLITE_FULL: the metadata database's write hit a full disk.
    if (x.code !== "ENOSPC" && x.code !== "SQLITE_FULL") continue;
    const top = err instanceof Error ? err.message : String(err);
    if (/^no space left on \//.test(top)) return top;
    return `no space left on ${x.path ?? "the device"}: ${top}`;
  }
  return undefined;
}
