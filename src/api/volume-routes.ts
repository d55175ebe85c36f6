import { readdir, rm, stat } from "node:fs/promises";
import path from "node:path";
import { matchAny, matchLabels, regexMatch } from "./container-filters.js";
import type { ApiDeps } from "./deps.js";
import { ApiError } from "./errors.js";
import { boolValue, parseFilters } from "./query-params.js";
import { sendJSON } from "./respond.js";
import type { Router } from "./router.js";

const VOLUME_FILTERS = ["dangling", "driver", "label", "name"] as const;

interface Volume {
  Name: string;
  Driver: "local";
  Mountpoint: string;
  CreatedAt: string;
  Labels: Record<string, string> | null;
  Scope: "local";
  Options: Record<string, string> | null;
}

/** GET /volumes, GET|DELETE /volumes/{name}: the runtime's named volumes (`<dataRoot>/volumes/<name>/_data`). */
export function registerVolumeRoutes(router: Router, deps: ApiDeps): void {
  const root = path.join(deps.dataRoot, "volumes");

  const inspect = async (name: string): Promise<Volume | undefined> => {
    if (!/^[A-Za-z0-9][A-Za-z0-9_.-]*$/.test(name)) return undefined;
    const st = await stat(path.join(root, name)).catch(() => undefined);
    if (!st?.isDirectory()) return undefined;
    return {
      Name: name,
      Driver: "local",
      Mountpoint: path.join(root, name, "_data"),
      // dockerd prints RFC 3339 with whole seconds.
      CreatedAt: new Date(Math.floor(st.birthtimeMs || st.mtimeMs)).toISOString().replace(/\.\d+Z$/, "Z"),
      Labels: null,
      Scope: "local",
      Options: null,
    };
  };

  /** Volume name → IDs of the containers mounting it (Arca's internal ones included). */
  const users = (): Map<string, string[]> => {
    const m = new Map<string, string[]>();
    for (const c of deps.runtime.list({ all: true }))
      for (const mount of c.spec.mounts ?? [])
        if (mount.type === "volume") m.set(mount.source, [...(m.get(mount.source) ?? []), c.id]);
    return m;
  };

  router.add("GET", "/volumes", async ({ res, query }) => {
    const f = parseFilters(query.get("filters"), VOLUME_FILTERS);
    for (const d of f.get("dangling") ?? [])
      if (!["true", "false", "1", "0"].includes(d))
        throw new ApiError("invalid_parameter", `invalid filter 'dangling=${d}'`);
    const names = await readdir(root).catch(() => [] as string[]);
    const used = users();
    const volumes: Volume[] = [];
    for (const name of names.sort()) {
      const v = await inspect(name);
      if (!v) continue;
      const dangling = !used.has(name);
      if (
        matchAny(f, "name", (p) => regexMatch(p, name)) &&
        matchAny(f, "driver", (d) => d === "local") &&
        matchAny(f, "dangling", (d) => (d === "true" || d === "1") === dangling) &&
        matchLabels(f, v.Labels ?? {})
      )
        volumes.push(v);
    }
    sendJSON(res, 200, { Volumes: volumes, Warnings: [] });
  });

  router.add("GET", "/volumes/{name}", async ({ res, params }) => {
    const name = params.name as string;
    const v = await inspect(name);
    if (!v) throw new ApiError("not_found", `get ${name}: no such volume`);
    sendJSON(res, 200, v);
  });

  router.add("POST", "/volumes/create", () => {
    throw new ApiError("unsupported", "creating volumes is not supported by Arca (build engine only)");
  });

  // Since API 1.42 prune only removes anonymous volumes unless `all=true`; Arca's are all named.
  router.add("POST", "/volumes/prune", async ({ res, query }) => {
    const f = parseFilters(query.get("filters"), ["all", "label"]);
    const deleted: string[] = [];
    let reclaimed = 0;
    if ((f.get("all") ?? []).some((v) => v === "true" || v === "1")) {
      const used = users();
      for (const name of await readdir(root).catch(() => [] as string[])) {
        const v = await inspect(name);
        if (!v || used.has(name) || !matchLabels(f, v.Labels ?? {})) continue;
        reclaimed += await du(path.join(root, name));
        await rm(path.join(root, name), { recursive: true, force: true });
        deleted.push(name);
      }
    }
    sendJSON(res, 200, { VolumesDeleted: deleted.length ? deleted : null, SpaceReclaimed: reclaimed });
  });

  router.add("DELETE", "/volumes/{name}", async ({ res, params, query }) => {
    const name = params.name as string;
    const v = await inspect(name);
    if (!v) {
      if (boolValue(query, "force")) {
        res.writeHead(204);
        res.end();
        return;
      }
      throw new ApiError("not_found", `get ${name}: no such volume`);
    }
    const by = users().get(name);
    if (by?.length) throw new ApiError("conflict", `remove ${name}: volume is in use - [${by.join(", ")}]`);
    await rm(path.join(root, name), { recursive: true, force: true });
    deps.events.emit("volume", "destroy", name, { driver: "local" });
    res.writeHead(204);
    res.end();
  });
}

/** Bytes used under a directory (regular files, each hard link counted once per path). */
async function du(dir: string): Promise<number> {
  let total = 0;
  for (const e of await readdir(dir, { withFileTypes: true, recursive: true }).catch(() => [])) {
    if (!e.isFile()) continue;
    const st = await stat(path.join(e.parentPath, e.name)).catch(() => undefined);
    total += st?.size ?? 0;
  }
  return total;
}
