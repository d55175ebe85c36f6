import { BuildMemo, ContextReuse, keptContextDir } from "../build/index.js";
import { registerBuildRoutes } from "./build-routes.js";
import { registerContainerRoutes } from "./container-routes.js";
import type { ApiDeps } from "./deps.js";
import { registerGrpcRoutes } from "./grpc-routes.js";
import { registerImageRoutes } from "./image-routes.js";
import { registerNetworkRoutes } from "./network-routes.js";
import { registerAuthRoute } from "./registry-routes.js";
import { Router } from "./router.js";
import { registerSessionRoutes } from "./session-routes.js";
import { registerSystemRoutes } from "./system-routes.js";
import { registerUnsupportedRoutes } from "./unsupported-routes.js";

/** Every Engine API route Arca serves. */
export function createApiRouter(deps: ApiDeps): Router {
  const router = new Router();
  // Shared: a cache prune through either API must make the next classic build really rebuild.
  const memo = new BuildMemo(undefined, new ContextReuse(keptContextDir(deps.dataRoot)));
  registerSystemRoutes(router, deps);
  registerBuildRoutes(router, deps, memo);
  registerContainerRoutes(router, deps);
  registerImageRoutes(router, deps);
  registerAuthRoute(router, deps);
  registerSessionRoutes(router, deps);
  registerGrpcRoutes(router, deps, memo);
  registerNetworkRoutes(router, deps);
  // Last: dockerd's routes Arca does not serve answer 501 with what they would do.
  registerUnsupportedRoutes(router, deps);
  return router;
}
