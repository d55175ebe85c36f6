import type { ApiDeps } from "./deps.js";
import { ApiError } from "./errors.js";
import type { Handler, Router, UpgradeHandler } from "./router.js";

/** The one wording for what a build engine does not do. */
export function unsupportedMessage(what: string): string {
  return `not supported by Arca (build engine only): ${what}`;
}

/** A handler answering 501 with Arca's message for `what`. */
export function unsupported(what: string): Handler {
  return () => {
    throw new ApiError("not_implemented", unsupportedMessage(what));
  };
}

/**
 * dockerd's routes that a build engine does not serve (API 1.51), with what each does. Registered last,
 * so that a client gets a clear 501 instead of dockerd's "page not found", which reads like a wrong
 * socket or an API mismatch. Networks are in network-routes.ts.
 */
const UNSUPPORTED: [method: string, pattern: string, what: string][] = [
  ["POST", "/containers/create", "creating containers"],
  ["GET", "/containers/{name}/top", "listing container processes"],
  ["GET", "/containers/{name}/changes", "container filesystem changes"],
  ["GET", "/containers/{name}/export", "exporting containers"],
  ["GET", "/containers/{name}/stats", "container stats"],
  ["GET", "/containers/{name}/attach/ws", "attaching to containers"],
  ["POST", "/containers/{name}/attach", "attaching to containers"],
  ["POST", "/containers/{name}/pause", "pausing containers"],
  ["POST", "/containers/{name}/unpause", "unpausing containers"],
  ["POST", "/containers/{name}/rename", "renaming containers"],
  ["POST", "/containers/{name}/update", "updating containers"],
  ["GET", "/containers/{name}/archive", "copying files from containers"],
  ["HEAD", "/containers/{name}/archive", "copying files from containers"],
  ["PUT", "/containers/{name}/archive", "copying files into containers"],
  ["POST", "/commit", "committing containers"],
  ["GET", "/images/search", "searching registries"],
  ["GET", "/distribution/{name*}/json", "querying registries for image manifests"],
  ["PUT", "/volumes/{name}", "updating cluster volumes"],
  ["GET", "/swarm", "swarm mode"],
  ["GET", "/swarm/unlockkey", "swarm mode"],
  ["POST", "/swarm/init", "swarm mode"],
  ["POST", "/swarm/join", "swarm mode"],
  ["POST", "/swarm/leave", "swarm mode"],
  ["POST", "/swarm/update", "swarm mode"],
  ["POST", "/swarm/unlock", "swarm mode"],
  ["GET", "/nodes", "swarm nodes"],
  ["GET", "/nodes/{id}", "swarm nodes"],
  ["POST", "/nodes/{id}/update", "swarm nodes"],
  ["DELETE", "/nodes/{id}", "swarm nodes"],
  ["GET", "/services", "swarm services"],
  ["POST", "/services/create", "swarm services"],
  ["GET", "/services/{id}", "swarm services"],
  ["POST", "/services/{id}/update", "swarm services"],
  ["DELETE", "/services/{id}", "swarm services"],
  ["GET", "/services/{id}/logs", "swarm services"],
  ["GET", "/tasks", "swarm tasks"],
  ["GET", "/tasks/{id}", "swarm tasks"],
  ["GET", "/tasks/{id}/logs", "swarm tasks"],
  ["GET", "/secrets", "swarm secrets"],
  ["POST", "/secrets/create", "swarm secrets"],
  ["GET", "/secrets/{id}", "swarm secrets"],
  ["POST", "/secrets/{id}/update", "swarm secrets"],
  ["DELETE", "/secrets/{id}", "swarm secrets"],
  ["GET", "/configs", "swarm configs"],
  ["POST", "/configs/create", "swarm configs"],
  ["GET", "/configs/{id}", "swarm configs"],
  ["POST", "/configs/{id}/update", "swarm configs"],
  ["DELETE", "/configs/{id}", "swarm configs"],
  ["GET", "/plugins", "plugins"],
  ["GET", "/plugins/privileges", "plugins"],
  ["POST", "/plugins/pull", "plugins"],
  ["POST", "/plugins/create", "plugins"],
  ["GET", "/plugins/{name*}/json", "plugins"],
  ["POST", "/plugins/{name*}/enable", "plugins"],
  ["POST", "/plugins/{name*}/disable", "plugins"],
  ["POST", "/plugins/{name*}/push", "plugins"],
  ["POST", "/plugins/{name*}/upgrade", "plugins"],
  ["POST", "/plugins/{name*}/set", "plugins"],
  ["DELETE", "/plugins/{name*}", "plugins"],
];

/** Routes the docker CLI asks to hijack (`Upgrade: tcp`): the 501 goes out on the raw socket. */
const UNSUPPORTED_UPGRADES: [method: string, pattern: string, what: string][] = [
  ["POST", "/containers/{name}/attach", "attaching to containers"],
];

/**
 * Registers every route of UNSUPPORTED. A route
 * naming a container that does not exist answers dockerd's 404 first, so a typo reads as one.
 */
export function registerUnsupportedRoutes(router: Router, deps: Pick<ApiDeps, "runtime">): void {
  for (const [method, pattern, what] of UNSUPPORTED) {
    const answer = unsupported(what);
    router.add(method, pattern, (ctx) => {
      if (pattern.startsWith("/containers/{name}/")) deps.runtime.get(ctx.params.name as string);
      return answer(ctx);
    });
  }
  for (const [method, pattern, what] of UNSUPPORTED_UPGRADES)
    router.upgrade(method, pattern, unsupportedUpgrade(unsupportedMessage(what)));
}

function unsupportedUpgrade(message: string): UpgradeHandler {
  return ({ req, socket }) => {
    req.resume();
    const body = JSON.stringify({ message });
    socket.end(
      `HTTP/1.1 501 Not Implemented\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
    );
  };
}
