import { spawn } from "node:child_process";

export interface HelperCredentials {
  username: string;
  secret: string;
  /** The helper returned an identity token (username "<token>"). */
  identityToken: boolean;
}

export class CredentialHelperError extends Error {
  override readonly name = "CredentialHelperError";
}

const HELPER_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;
const TIMEOUT_MS = 30_000;

/**
 * Runs `docker-credential-<name> get` with the server address on stdin.
 * Returns undefined when the helper is not installed or has no credentials
 * for the server (its "credentials not found" answer).
 */
export function runCredentialHelper(
  name: string,
  server: string,
  signal?: AbortSignal,
): Promise<HelperCredentials | undefined> {
  if (!HELPER_NAME.test(name))
    return Promise.reject(
      new CredentialHelperError(`invalid credential helper name ${JSON.stringify(name)}`),
    );
  return new Promise((resolve, reject) => {
    const child = spawn(`docker-credential-${name}`, ["get"], {
      stdio: ["pipe", "pipe", "pipe"],
      signal,
    });
    // Own timer: spawn's `timeout` option is not cleared when the binary is missing.
    const timer = setTimeout(() => child.kill("SIGKILL"), TIMEOUT_MS);
    timer.unref();
    const settle = () => clearTimeout(timer);
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (d: string) => {
      if (stdout.length < 1 << 20) stdout += d;
    });
    child.stderr.setEncoding("utf8").on("data", (d: string) => {
      if (stderr.length < 1 << 16) stderr += d;
    });
    child.stdin.on("error", () => {});
    child.on("error", (err: NodeJS.ErrnoException) => {
      settle();
      if (err.code === "ENOENT") resolve(undefined);
      else reject(new CredentialHelperError(`docker-credential-${name}: ${err.message}`, { cause: err }));
    });
    child.on("close", (code) => {
      settle();
      if (code !== 0) {
        const msg = (stdout || stderr).trim();
        if (/credentials not found/i.test(msg)) return resolve(undefined);
        return reject(
          new CredentialHelperError(`docker-credential-${name} get failed: ${msg || `exit ${code}`}`),
        );
      }
      try {
        const r = JSON.parse(stdout) as { Username?: string; Secret?: string };
        const token = r.Username === "<token>";
        resolve({ username: token ? "" : (r.Username ?? ""), secret: r.Secret ?? "", identityToken: token });
      } catch {
        reject(new CredentialHelperError(`docker-credential-${name} returned invalid JSON`));
      }
    });
    child.stdin.end(server);
  });
}
