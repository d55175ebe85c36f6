import { registerBuildRoutes } from "./build-routes.js";
import { registerContainerRoutes } from "./container-routes.js";
import type { ApiDeps } from "./deps.js";
import { registerImageRoutes } from "./image-routes.js";
import { Router } from "./router.js";
import { registerSessionRoutes } from "./session-routes.js";
import { registerSystemRoutes } from "./system-routes.js";

/** Every Engine API route Arca serves. */
export function createApiRouter(deps: ApiDeps): Router {
  const router = new Router();
  registerSystemRoutes(router, deps);
  registerBuildRoutes(router, deps);
  registerContainerRoutes(router, deps);
  registerImageRoutes(router, deps);
  registerSessionRoutes(router, deps);
  return router;
}
