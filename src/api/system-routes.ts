import os from "node:os";
import type { ApiDeps } from "./deps.js";
import { daemonInfo } from "./info-view.js";
import { sendJSON } from "./respond.js";
import type { Router } from "./router.js";
import { API_VERSION, ARCA_VERSION, MIN_API_VERSION } from "./version.js";

const PING_HEADERS = {
  "Api-Version": API_VERSION,
  "Builder-Version": "2",
  "Docker-Experimental": "false",
  Ostype: "linux",
  Swarm: "inactive",
  Server: `Arca/${ARCA_VERSION} (linux)`,
  "Cache-Control": "no-cache, no-store, must-revalidate",
  Pragma: "no-cache",
};

const goArch = (): string =>
  ({ x64: "amd64", arm64: "arm64", ia32: "386" })[process.arch as string] ?? process.arch;

/** /_ping, /version, /info, /events. */
export function registerSystemRoutes(router: Router, deps: ApiDeps): void {
  router.add("GET", "/_ping", ({ req, res }) => {
    const body = req.method === "HEAD" ? "" : "OK";
    res.writeHead(200, {
      ...PING_HEADERS,
      "Content-Type": "text/plain; charset=utf-8",
      "Content-Length": body.length,
    });
    res.end(body);
  });
  router.add("HEAD", "/_ping", ({ res }) => {
    res.writeHead(200, { ...PING_HEADERS, "Content-Type": "text/plain; charset=utf-8", "Content-Length": 0 });
    res.end();
  });

  router.add("GET", "/version", ({ res }) => {
    sendJSON(res, 200, {
      Platform: { Name: "Arca" },
      Components: [
        {
          Name: "Engine",
          Version: ARCA_VERSION,
          Details: { ApiVersion: API_VERSION, MinAPIVersion: MIN_API_VERSION, Os: "linux", Arch: goArch() },
        },
        { Name: "BuildKit", Version: deps.buildkitVersion, Details: {} },
      ],
      Version: ARCA_VERSION,
      ApiVersion: API_VERSION,
      MinAPIVersion: MIN_API_VERSION,
      GitCommit: "",
      GoVersion: `node${process.versions.node}`,
      Os: "linux",
      Arch: goArch(),
      KernelVersion: os.release(),
      Experimental: false,
      BuildTime: "",
    });
  });

  router.add("GET", "/info", ({ res, apiVersion }) => sendJSON(res, 200, daemonInfo(deps, apiVersion)));

  router.add("GET", "/events", ({ res, query, signal }) => {
    const since = query.get("since");
    res.writeHead(200, { "Content-Type": "application/json" });
    res.flushHeaders();
    const unsubscribe = deps.events.subscribe(
      (e) => res.write(`${JSON.stringify(e)}\n`),
      since ? Number(since) : undefined,
    );
    const until = query.get("until");
    const end = () => {
      unsubscribe();
      res.end();
    };
    signal.addEventListener("abort", unsubscribe, { once: true });
    if (until) setTimeout(end, Math.max(0, Number(until) * 1000 - Date.now()));
  });
}
