import { rm } from "node:fs/promises";
import path from "node:path";
import { matchAny, matchLabels, regexMatch } from "./container-filters.js";
import type { ApiDeps } from "./deps.js";
import { ApiError } from "./errors.js";
import { boolValue, parseFilters } from "./query-params.js";
import { sendJSON } from "./respond.js";
import type { Router } from "./router.js";
import { unsupported } from "./unsupported-routes.js";
import { type Volume, VolumeStore } from "./volume-store.js";

const VOLUME_FILTERS = ["dangling", "driver", "label", "name"] as const;

/** GET /volumes, GET|DELETE /volumes/{name}: the runtime's named volumes (`<dataRoot>/volumes/<name>/_data`). */
export function registerVolumeRoutes(router: Router, deps: ApiDeps): void {
  const volumes = new VolumeStore(deps);
  const root = volumes.root;
  const inspect = (name: string) => volumes.inspect(name);
  const users = () => volumes.users();

  router.add("GET", "/volumes", async ({ res, query }) => {
    const f = parseFilters(query.get("filters"), VOLUME_FILTERS);
    for (const d of f.get("dangling") ?? [])
      if (!["true", "false", "1", "0"].includes(d))
        throw new ApiError("invalid_parameter", `invalid filter 'dangling=${d}'`);
    const names = await volumes.names();
    const used = users();
    const out: Volume[] = [];
    for (const name of names) {
      const v = await inspect(name);
      if (!v) continue;
      const dangling = !used.has(name);
      if (
        matchAny(f, "name", (p) => regexMatch(p, name)) &&
        matchAny(f, "driver", (d) => d === "local") &&
        matchAny(f, "dangling", (d) => (d === "true" || d === "1") === dangling) &&
        matchLabels(f, v.Labels ?? {})
      )
        out.push(v);
    }
    sendJSON(res, 200, { Volumes: out, Warnings: [] });
  });

  router.add("GET", "/volumes/{name}", async ({ res, params }) => {
    const name = params.name as string;
    const v = await inspect(name);
    if (!v) throw new ApiError("not_found", `get ${name}: no such volume`);
    sendJSON(res, 200, v);
  });

  router.add("POST", "/volumes/create", unsupported("creating volumes"));

  // Since API 1.42 prune only removes anonymous volumes unless `all=true`; Arca's are all named.
  router.add("POST", "/volumes/prune", async ({ res, query }) => {
    const f = parseFilters(query.get("filters"), ["all", "label"]);
    const deleted: string[] = [];
    let reclaimed = 0;
    if ((f.get("all") ?? []).some((v) => v === "true" || v === "1")) {
      const used = users();
      for (const name of await volumes.names()) {
        const v = await inspect(name);
        if (!v || used.has(name) || !matchLabels(f, v.Labels ?? {})) continue;
        reclaimed += await volumes.size(name);
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
