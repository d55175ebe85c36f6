export { type AuthOptions, createAuthService } from "./auth-service.js";
export { DOCKER_HUB_SERVER, serverAddressFor } from "./docker-config.js";
