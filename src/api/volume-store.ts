import { readdir, stat } from "node:fs/promises";
import path from "node:path";
import type { ApiDeps } from "./deps.js";

export interface Volume {
  Name: string;
  Driver: "local";
  Mountpoint: string;
  CreatedAt: string;
  Labels: Record<string, string> | null;
  Scope: "local";
  Options: Record<string, string> | null;
}

/** The runtime's named volumes: `<dataRoot>/volumes/<name>/_data`, as dockerd's local driver keeps them. */
export class VolumeStore {
  readonly root: string;

  constructor(private readonly deps: Pick<ApiDeps, "dataRoot" | "runtime">) {
    this.root = path.join(deps.dataRoot, "volumes");
  }

  async names(): Promise<string[]> {
    return (await readdir(this.root).catch(() => [] as string[])).sort();
  }

  async inspect(name: string): Promise<Volume | undefined> {
    if (!/^[A-Za-z0-9][A-Za-z0-9_.-]*$/.test(name)) return undefined;
    const st = await stat(path.join(this.root, name)).catch(() => undefined);
    if (!st?.isDirectory()) return undefined;
    return {
      Name: name,
      Driver: "local",
      Mountpoint: path.join(this.root, name, "_data"),
      // dockerd prints RFC 3339 with whole seconds.
      CreatedAt: new Date(Math.floor(st.birthtimeMs || st.mtimeMs)).toISOString().replace(/\.\d+Z$/, "Z"),
      Labels: null,
      Scope: "local",
      Options: null,
    };
  }

  /** Volume name → IDs of the containers mounting it (Arca's internal ones included). */
  users(): Map<string, string[]> {
    const m = new Map<string, string[]>();
    for (const c of this.deps.runtime.list({ all: true }))
      for (const mount of c.spec.mounts ?? [])
        if (mount.type === "volume") m.set(mount.source, [...(m.get(mount.source) ?? []), c.id]);
    return m;
  }

  /** Bytes a volume uses (regular files, each hard link counted once per path). */
  async size(name: string): Promise<number> {
    return du(path.join(this.root, name));
  }
}

async function du(dir: string): Promise<number> {
  let total = 0;
  for (const e of await readdir(dir, { withFileTypes: true, recursive: true }).catch(() => [])) {
    if (!e.isFile()) continue;
    const st = await stat(path.join(e.parentPath, e.name)).catch(() => undefined);
    total += st?.size ?? 0;
  }
  return total;
}
