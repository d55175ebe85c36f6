export { RegistryClient, type RegistryClientOptions } from "./client.js";
export { credentialsFrom, decodeRegistryAuth, type RegistryCredentials } from "./credentials.js";
export { RegistryError, type RegistryErrorCode } from "./errors.js";
export type { ProgressMessage, ProgressSink } from "./progress.js";
export type { PullRequest, PullResult } from "./pull.js";
export type { PushRequest, PushResult } from "./push.js";
export { parseMirror, type RegistrySettings } from "./settings.js";
export type { Dial } from "./transport.js";
