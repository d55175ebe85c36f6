import { RegistryError } from "./errors.js";

/** dockerd's AuthConfig (X-Registry-Auth, the body of POST /auth). */
export interface RegistryCredentials {
  username?: string;
  password?: string;
  /** An OAuth2 refresh token (from an earlier login) used for the token handshake. */
  identitytoken?: string;
  /** A bearer token to send as is. */
  registrytoken?: string;
  serveraddress?: string;
}

/** The credentials' fields from a parsed AuthConfig document (`auth` = base64 of user:password). */
export function credentialsFrom(doc: unknown): RegistryCredentials {
  if (!doc || typeof doc !== "object") return {};
  const d = doc as Record<string, unknown>;
  const str = (k: string) => (typeof d[k] === "string" && d[k] !== "" ? (d[k] as string) : undefined);
  const out: RegistryCredentials = {};
  let username = str("username");
  let password = str("password");
  const auth = str("auth");
  if (auth && !username) {
    const plain = Buffer.from(auth, "base64").toString("utf8");
    const colon = plain.indexOf(":");
    if (colon > 0) {
      username = plain.slice(0, colon);
      password = plain.slice(colon + 1);
    }
  }
  if (username) out.username = username;
  if (password) out.password = password;
  for (const k of ["identitytoken", "registrytoken", "serveraddress"] as const) {
    const v = str(k);
    if (v) out[k] = v;
  }
  return out;
}

/**
 * Decodes the X-Registry-Auth header (base64url JSON, as the docker CLI,
 * dockerode and the Python SDK send it; padding optional). Absent or empty
 * means anonymous; anything else that does not decode is a 400.
 */
export function decodeRegistryAuth(header: string | undefined): RegistryCredentials {
  if (!header || header.trim() === "") return {};
  let doc: unknown;
  try {
    doc = JSON.parse(Buffer.from(header.trim(), "base64url").toString("utf8"));
  } catch {
    try {
      doc = JSON.parse(Buffer.from(header.trim(), "base64").toString("utf8"));
    } catch (err) {
      throw new RegistryError("invalid_request", "invalid X-Registry-Auth header: not base64-encoded JSON", {
        cause: err,
      });
    }
  }
  return credentialsFrom(doc);
}
