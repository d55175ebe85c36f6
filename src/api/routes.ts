import type { ApiDeps } from "./deps.js";
import { Router } from "./router.js";
import { registerSystemRoutes } from "./system-routes.js";

/** Every Engine API route Arca serves. */
export function createApiRouter(deps: ApiDeps): Router {
  const router = new Router();
  registerSystemRoutes(router, deps);
  return router;
}
