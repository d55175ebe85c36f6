import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import type { Auth } from "../../gen/moby/filesync/v1/auth_pb.js";
import { CredentialHelperError, runCredentialHelper } from "./credential-helper.js";
import {
  type DockerConfig,
  defaultDockerConfigPath,
  findAuth,
  loadDockerConfig,
  serverAddressFor,
} from "./docker-config.js";

export interface AuthOptions {
  /** A docker CLI config.json; default $DOCKER_CONFIG/config.json or ~/.docker/config.json. */
  configPath?: string;
  /** Explicit credentials by registry host (or server URL); tried before the config file. */
  credentials?: Record<string, { username: string; secret: string }>;
  /** Consult the config file (and its credential helpers); default true. */
  useDockerConfig?: boolean;
  signal?: AbortSignal;
}

/**
 * moby.filesync.v1.Auth: registry credentials for buildkitd. Only
 * Credentials is served; the token methods answer UNIMPLEMENTED so the
 * daemon fetches registry tokens itself with these credentials. Unknown
 * hosts get an empty answer (anonymous access).
 */
export function createAuthService(opts: AuthOptions = {}): Partial<ServiceImpl<typeof Auth>> {
  const explicit = new Map<string, { username: string; secret: string }>();
  for (const [key, c] of Object.entries(opts.credentials ?? {})) explicit.set(serverAddressFor(key), c);
  let config: Promise<DockerConfig> | undefined;
  const loadConfig = () => {
    config ??= loadDockerConfig(opts.configPath ?? defaultDockerConfigPath());
    return config;
  };
  const unimplemented = () => {
    throw new ConnectError("not implemented: the daemon fetches tokens itself", Code.Unimplemented);
  };

  return {
    async credentials(req, ctx) {
      const server = serverAddressFor(req.Host);
      const c = explicit.get(server);
      if (c) return { Username: c.username, Secret: c.secret };
      if (opts.useDockerConfig === false) return {};
      let cfg: DockerConfig;
      try {
        cfg = await loadConfig();
      } catch (err) {
        throw new ConnectError(`reading docker config: ${(err as Error).message}`, Code.FailedPrecondition);
      }
      const helper = cfg.credHelpers[server] ?? cfg.credsStore;
      if (helper) {
        const signals = [ctx.signal, ...(opts.signal ? [opts.signal] : [])];
        try {
          const h = await runCredentialHelper(helper, server, AbortSignal.any(signals));
          if (h) return h.identityToken ? { Secret: h.secret } : { Username: h.username, Secret: h.secret };
          // Helper missing or without an entry: fall back to the file's auths, as the CLI's file store would.
        } catch (err) {
          if (err instanceof CredentialHelperError) throw new ConnectError(err.message, Code.Unavailable);
          throw err;
        }
      }
      const a = findAuth(cfg, server);
      if (!a) return {};
      // An identity token takes the place of the password (BuildKit's authprovider).
      if (a.identityToken) return { Secret: a.identityToken };
      return { Username: a.username, Secret: a.password };
    },
    fetchToken: unimplemented,
    getTokenAuthority: unimplemented,
    verifyTokenAuthority: unimplemented,
  };
}
