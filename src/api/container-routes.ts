import { constants } from "node:os";
import type { ContainerInspect } from "../runtime/index.js";
import { ExecStore } from "./container-exec-store.js";
import { dockerInspect } from "./container-inspect.js";
import { streamLogs } from "./container-logs.js";
import {
  CONTAINER_FILTERS,
  containerSummary,
  isInternal,
  matchesContainer,
  validateContainerFilters,
} from "./container-summary.js";
import type { ApiDeps } from "./deps.js";
import { ApiError } from "./errors.js";
import { registerExecRoutes } from "./exec-routes.js";
import { boolValue, parseFilters } from "./query-params.js";
import { sendJSON } from "./respond.js";
import type { Router } from "./router.js";
import { sandboxContainer } from "./sandbox-container.js";
import { registerVolumeRoutes } from "./volume-routes.js";

/**
 * Arca runs no user containers: these routes show and manage its internal ones (the `arca-buildkit`
 * sandbox) the way dockerd would, while `docker ps` lists none of them. Also registers the exec and
 * volume routes, which share the exec store.
 */
export function registerContainerRoutes(router: Router, deps: ApiDeps): void {
  const execs = new ExecStore();
  const { runtime } = deps;

  router.add("GET", "/containers/json", ({ res, query }) => {
    const filters = parseFilters(query.get("filters"), CONTAINER_FILTERS);
    validateContainerFilters(filters);
    const limitRaw = query.get("limit") ?? "";
    const limit = /^-?\d+$/.test(limitRaw) ? Number(limitRaw) : 0;
    const all = boolValue(query, "all") || limit > 0 || filters.has("status") || filters.has("exited");
    const now = Date.now();
    const out: Record<string, unknown>[] = [];
    for (const rec of runtime.list({ all })) {
      const c = tryInspect(deps, rec.id);
      if (!c || isInternal(c) || !matchesContainer(c, filters)) continue;
      out.push(containerSummary(c, now));
      if (limit > 0 && out.length >= limit) break;
    }
    sendJSON(res, 200, out);
  });

  router.add("POST", "/containers/prune", async ({ res, signal }) => {
    const deleted: string[] = [];
    for (const rec of runtime.list({ all: true })) {
      const c = tryInspect(deps, rec.id);
      if (!c || isInternal(c) || c.State.Running || c.State.Restarting) continue;
      await runtime.remove(c.Id, { signal });
      deleted.push(c.Id);
    }
    sendJSON(res, 200, { ContainersDeleted: deleted.length ? deleted : null, SpaceReclaimed: 0 });
  });

  router.add("GET", "/containers/{name}/json", ({ res, params }) => {
    const vm = sandboxContainer(deps, params.name as string);
    if (vm) return sendJSON(res, 200, dockerInspect(vm.inspect(), []));
    const c = runtime.inspect(params.name as string);
    sendJSON(res, 200, dockerInspect(c, execs.idsFor(c.Id)));
  });

  router.add("GET", "/containers/{name}/logs", async ({ res, params, query, apiVersion, signal }) => {
    const vm = sandboxContainer(deps, params.name as string);
    if (vm) return streamLogs({ logs: (_id, o) => vm.logs(o) }, vm.inspect(), query, apiVersion, res, signal);
    const c = runtime.inspect(params.name as string);
    await streamLogs(runtime, c, query, apiVersion, res, signal);
  });

  router.add("POST", "/containers/{name}/start", async ({ res, params, signal }) => {
    const c = runtime.get(params.name as string);
    if (c.status === "running") return empty(res, 304);
    await runtime.start(c.id, { signal });
    empty(res, 204);
  });

  router.add("POST", "/containers/{name}/stop", async ({ res, params, query, signal }) => {
    const c = runtime.get(params.name as string);
    const timeoutSec = stopTimeout(query);
    if (c.status !== "running" && c.status !== "restarting") return empty(res, 304);
    await runtime.stop(c.id, { timeoutSec, signal });
    empty(res, 204);
  });

  router.add("POST", "/containers/{name}/restart", async ({ res, params, query, signal }) => {
    const c = runtime.get(params.name as string);
    const timeoutSec = stopTimeout(query);
    await runtime.stop(c.id, { timeoutSec, signal });
    await runtime.start(c.id, { signal });
    empty(res, 204);
  });

  router.add("POST", "/containers/{name}/kill", async ({ res, params, query }) => {
    const name = params.name as string;
    const c = runtime.get(name);
    const sig = signalParam(query.get("signal"));
    if (c.status !== "running")
      throw new ApiError("conflict", `Cannot kill container: ${name}: Container ${c.id} is not running`);
    await runtime.kill(c.id, sig);
    empty(res, 204);
  });

  router.add("POST", "/containers/{name}/wait", async ({ res, params, query, signal }) => {
    const c = runtime.get(params.name as string);
    const condition = query.get("condition") || "not-running";
    if (!["not-running", "next-exit", "removed"].includes(condition))
      throw new ApiError("invalid_parameter", `invalid condition: "${condition}"`);
    // As dockerd: the headers go out at once, so the client knows the wait is in place.
    res.writeHead(200, { "Content-Type": "application/json" });
    res.flushHeaders();
    const code = await runtime.wait(c.id, signal);
    res.end(JSON.stringify({ StatusCode: code }));
  });

  router.add("POST", "/containers/{name}/resize", ({ res, params, query }) => {
    runtime.get(params.name as string);
    for (const k of ["h", "w"])
      if (!/^\d*$/.test(query.get(k) ?? ""))
        throw new ApiError("invalid_parameter", `invalid ${k} value: ${query.get(k)}`);
    // Arca's containers have no TTY: nothing to resize.
    empty(res, 200);
  });

  router.add("DELETE", "/containers/{name}", async ({ res, params, query, signal }) => {
    const name = params.name as string;
    const c = runtime.inspect(name);
    if (isInternal(c))
      throw new ApiError(
        "conflict",
        `cannot remove container ${c.Name.slice(1)}: it is managed by Arca (the BuildKit sandbox); stop the Arca daemon instead`,
      );
    await runtime.remove(c.Id, { force: boolValue(query, "force"), signal });
    empty(res, 204);
  });

  registerExecRoutes(router, deps, execs);
  registerVolumeRoutes(router, deps);
}

function tryInspect(deps: ApiDeps, id: string): ContainerInspect | undefined {
  try {
    return deps.runtime.inspect(id);
  } catch {
    // Removed between list and inspect.
    return undefined;
  }
}

function empty(res: import("node:http").ServerResponse, status: number): void {
  res.writeHead(status, status === 200 ? { "Content-Length": 0 } : {});
  res.end();
}

/** `t` in seconds (dockerd's default 10; negative waits forever, capped here at a day). */
function stopTimeout(query: URLSearchParams): number {
  const t = query.get("t");
  if (t === null || t === "") return 10;
  if (!/^-?\d+$/.test(t)) throw new ApiError("invalid_parameter", `invalid value for t: ${t}`);
  const n = Number(t);
  return n < 0 ? 86_400 : n;
}

/** A signal name (`SIGHUP`, `HUP`) or number, as `docker kill --signal` accepts; default SIGKILL. */
function signalParam(raw: string | null): string {
  if (!raw) return "SIGKILL";
  if (/^\d+$/.test(raw)) {
    const n = Number(raw);
    if (n >= 1 && n <= 64) return raw;
  } else {
    const name = raw.toUpperCase().startsWith("SIG") ? raw.toUpperCase() : `SIG${raw.toUpperCase()}`;
    if (name in constants.signals) return name;
  }
  throw new ApiError("invalid_parameter", `Invalid signal: ${raw}`);
}
