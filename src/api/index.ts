export type { ApiDeps } from "./deps.js";
export { ApiError, httpStatusFor } from "./errors.js";
export { type DockerEvent, EventBus } from "./events.js";
export { createApiRouter } from "./routes.js";
export { type ApiServer, createApiServer } from "./server.js";
export { API_VERSION, MIN_API_VERSION } from "./version.js";
