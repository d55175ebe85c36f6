import { readFile } from "node:fs/promises";
import { TransportError } from "./errors.js";

/** Paths of PEM files for a TLS dial (mutual TLS when cert and key are set). */
export interface TlsFiles {
  ca?: string;
  cert?: string;
  key?: string;
  serverName?: string;
}

export interface TlsMaterial {
  ca?: Buffer;
  cert?: Buffer;
  key?: Buffer;
}

/**
 * Reads the PEM files on every dial so rotated certificates are picked up.
 * A missing file is a configuration error, not an unreachable daemon.
 */
export async function readTlsFiles(files: TlsFiles): Promise<TlsMaterial> {
  if ((files.cert === undefined) !== (files.key === undefined)) {
    throw new TransportError("tls_config", "TLS client certificate and key must be given together");
  }
  const out: TlsMaterial = {};
  for (const name of ["ca", "cert", "key"] as const) {
    const path = files[name];
    if (path === undefined) continue;
    try {
      out[name] = await readFile(path);
    } catch (err) {
      throw new TransportError(
        "tls_config",
        `cannot read TLS ${name} file ${path}: ${(err as Error).message}`,
        {
          cause: err,
        },
      );
    }
  }
  return out;
}
