import { readFile, rename, writeFile } from "node:fs/promises";

/**
 * What the daemon last did with its policy file, written after every
 * (re)load so that `arca egress reload` can say whether the daemon took the
 * new policy or kept the old one, and why.
 */
export interface EgressPolicyStatus {
  /** The policy file the daemon reads. */
  file: string;
  /** Number of reload attempts so far (0 at start). */
  reloads: number;
  /** When this attempt finished (ISO 8601). */
  time: string;
  /** Did this attempt install the file's policy? */
  ok: boolean;
  /** The policy in force, e.g. `allowlist, 3 allow entries, 1 hosts entry (/x/egress.json)`. */
  policy: string;
  /** Why the file was refused (the old policy stays in force). */
  error?: string;
}

export async function writeEgressPolicyStatus(file: string, status: EgressPolicyStatus): Promise<void> {
  // Written whole then renamed: a reader never sees half a file.
  const tmp = `${file}.${process.pid}.tmp`;
  await writeFile(tmp, `${JSON.stringify(status)}\n`, { mode: 0o600 });
  await rename(tmp, file);
}

export async function readEgressPolicyStatus(file: string): Promise<EgressPolicyStatus | undefined> {
  try {
    return JSON.parse(await readFile(file, "utf8")) as EgressPolicyStatus;
  } catch {
    return undefined;
  }
}
