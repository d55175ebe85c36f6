export { parseSecretSpec, type SecretSource } from "./secret-spec.js";
export { createSecretsService, MAX_SECRET_SIZE, type SecretsOptions } from "./secrets-service.js";
