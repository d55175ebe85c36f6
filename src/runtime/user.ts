import { lstat, readFile } from "node:fs/promises";
import { join } from "node:path";
import { RuntimeError } from "./errors.js";

export interface ResolvedUser {
  uid: number;
  gid: number;
  additionalGids: number[];
}

/**
 * Resolves Docker's `user[:group]` (names or numbers) against the container's own /etc/passwd and
 * /etc/group, as Docker does at start. A symlinked passwd/group file is not followed (it would resolve
 * on the host), so names then fail to resolve.
 */
export async function resolveUser(rootfs: string, user: string): Promise<ResolvedUser> {
  const [u = "", g] = user.split(":", 2);
  const passwd = await readEtc(rootfs, "passwd");
  const groups = await readEtc(rootfs, "group");
  let uid: number;
  let gid = 0;
  if (u === "") uid = 0;
  else if (/^\d+$/.test(u)) {
    uid = Number(u);
    const entry = passwd.find((p) => p[2] === u);
    if (entry) gid = Number(entry[3]);
  } else {
    const entry = passwd.find((p) => p[0] === u);
    if (!entry)
      throw new RuntimeError("invalid_spec", `unable to find user ${u}: no matching entries in passwd file`);
    uid = Number(entry[2]);
    gid = Number(entry[3]);
  }
  if (g !== undefined && g !== "") {
    if (/^\d+$/.test(g)) gid = Number(g);
    else {
      const entry = groups.find((e) => e[0] === g);
      if (!entry)
        throw new RuntimeError(
          "invalid_spec",
          `unable to find group ${g}: no matching entries in group file`,
        );
      gid = Number(entry[2]);
    }
  }
  const name = passwd.find((p) => Number(p[2]) === uid)?.[0];
  const additionalGids = name
    ? groups
        .filter((e) => (e[3] ?? "").split(",").includes(name))
        .map((e) => Number(e[2]))
        .filter((x) => x !== gid)
    : [];
  return { uid, gid, additionalGids };
}

async function readEtc(rootfs: string, file: string): Promise<string[][]> {
  const path = join(rootfs, "etc", file);
  try {
    const etc = await lstat(join(rootfs, "etc"));
    const st = await lstat(path);
    if (!etc.isDirectory() || !st.isFile()) return [];
    return (await readFile(path, "utf8"))
      .split("\n")
      .filter((l) => l && !l.startsWith("#"))
      .map((l) => l.split(":"));
  } catch {
    return [];
  }
}
