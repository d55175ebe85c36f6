import { chmod, lchown, lstat, opendir } from "node:fs/promises";
import { join } from "node:path";
import type { UsernsMapping } from "./types.js";

/**
 * Makes a volume usable by a user-namespaced container: inside, only files owned by mapped ids can be
 * written by its root. A volume whose top is already owned by the mapped root is left alone (the usual
 * case: one stat). Otherwise every owner below the mapping's size is shifted into it (uid u becomes
 * hostId + u, as for the image's layers); owners already in the mapped range or beyond it stay.
 */
export async function shiftOwnership(
  dir: string,
  ids: UsernsMapping,
  log?: (line: string) => void,
): Promise<void> {
  const top = await lstat(dir);
  if (top.uid === ids.hostId && top.gid === ids.hostId) return;
  const shift = (id: number) => (id < ids.size ? id + ids.hostId : id);
  let count = 0;
  const visit = async (p: string, st: Awaited<ReturnType<typeof lstat>>) => {
    const [u, g] = [shift(Number(st.uid)), shift(Number(st.gid))];
    if (u === st.uid && g === st.gid) return;
    await lchown(p, u, g);
    // chown clears set-user/group-ID bits, even as root: put them back.
    if (!st.isSymbolicLink() && Number(st.mode) & 0o6000) await chmod(p, Number(st.mode) & 0o7777);
    count++;
  };
  const walk = async (d: string) => {
    for await (const e of await opendir(d)) {
      const p = join(d, e.name);
      await visit(p, await lstat(p));
      if (e.isDirectory()) await walk(p);
    }
  };
  await walk(dir);
  // The top last: a crash midway leaves it unshifted, so the next start finishes the walk.
  await visit(dir, top);
  if (count > 1) log?.(`shifted the owners of ${count} files into the user namespace`);
}
