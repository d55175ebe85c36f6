import { open } from "node:fs/promises";
import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import type { Secrets } from "../../gen/moby/buildkit/secrets/v1/secrets_pb.js";
import type { SecretSource } from "./secret-spec.js";

/** BuildKit's secretsprovider refuses bigger secrets. */
export const MAX_SECRET_SIZE = 500 * 1024;

export interface SecretsOptions {
  secrets: Record<string, SecretSource>;
}

/** moby.buildkit.secrets.v1.Secrets: GetSecret by id; unknown ids are NOT_FOUND. */
export function createSecretsService(opts: SecretsOptions): Partial<ServiceImpl<typeof Secrets>> {
  return {
    async getSecret(req) {
      const src = Object.hasOwn(opts.secrets, req.ID) ? opts.secrets[req.ID] : undefined;
      if (!src) throw new ConnectError(`secret ${req.ID} not found`, Code.NotFound);
      if (src.value !== undefined) return { data: src.value };
      // Like buildx, an unset variable is an empty secret.
      if (src.env !== undefined) return { data: new TextEncoder().encode(process.env[src.env] ?? "") };
      if (src.file !== undefined) return { data: await readSecretFile(req.ID, src.file) };
      throw new ConnectError(`secret ${req.ID} has no source`, Code.NotFound);
    },
  };
}

async function readSecretFile(id: string, file: string): Promise<Uint8Array> {
  let fh: Awaited<ReturnType<typeof open>>;
  try {
    fh = await open(file, "r");
  } catch (err) {
    throw new ConnectError(`secret ${id}: ${(err as Error).message}`, Code.NotFound);
  }
  try {
    const { size } = await fh.stat();
    if (size > MAX_SECRET_SIZE)
      throw new ConnectError(`secret ${id} too big. max size 500KB`, Code.InvalidArgument);
    const buf = Buffer.alloc(size);
    let off = 0;
    while (off < size) {
      const { bytesRead } = await fh.read(buf, off, size - off, off);
      if (bytesRead === 0) break;
      off += bytesRead;
    }
    return buf.subarray(0, off);
  } finally {
    await fh.close();
  }
}
