import type { IncomingMessage } from "node:http";
import type { ContentStore, Descriptor } from "../images/index.js";
import { errorMessage, sleep } from "../util/index.js";
import { RegistryError } from "./errors.js";
import type { RepositoryClient } from "./repository.js";

const ATTEMPTS = 4;

/**
 * Downloads a blob into the content store, streamed (never held in memory)
 * into an upload session of the store. A connection that breaks part-way
 * is resumed with `Range: bytes=N-` (three more tries); the blob is
 * committed only when its size and digest match the descriptor, else
 * nothing of it is kept.
 */
export async function fetchBlob(
  repo: RepositoryClient,
  store: ContentStore,
  desc: Descriptor,
  onBytes: (received: number) => void,
  signal?: AbortSignal,
): Promise<void> {
  let id = await store.startUpload();
  try {
    let lastError: string | undefined;
    for (let attempt = 0; ; attempt++) {
      let offset = await store.uploadSize(id);
      if (offset === desc.size) break;
      if (attempt >= ATTEMPTS) {
        throw new RegistryError(
          "unreachable",
          `downloading ${desc.digest} failed after ${ATTEMPTS} attempts at ${offset} of ${desc.size} bytes: ${lastError ?? "connection closed early"}`,
        );
      }
      if (attempt > 0) await sleep(200 * attempt, signal);
      const res = await repo.send("GET", `blobs/${desc.digest}`, {
        follow: true,
        accept: [206],
        ...(offset > 0 ? { headers: { range: `bytes=${offset}-` } } : {}),
      });
      if (offset > 0 && !rangeStartsAt(res, offset)) {
        // The server ignored the Range: start over.
        await store.abortUpload(id).catch(() => {});
        id = await store.startUpload();
        offset = 0;
        if (res.statusCode !== 200) {
          res.resume();
          continue;
        }
      }
      const cut: { error?: string } = {};
      await store.appendUpload(id, bodyOf(res, offset, desc, onBytes, cut), {
        offset,
        ...(signal ? { signal } : {}),
      });
      lastError = cut.error;
    }
    try {
      await store.commitUpload(id, desc.digest, signal);
    } catch (err) {
      throw new RegistryError(
        "bad_content",
        `filesystem layer verification failed for digest ${desc.digest}: ${errorMessage(err)}`,
        { cause: err },
      );
    }
  } catch (err) {
    await store.abortUpload(id).catch(() => {});
    throw err;
  }
}

function rangeStartsAt(res: IncomingMessage, offset: number): boolean {
  if (res.statusCode !== 206) return false;
  const m = /^bytes (\d+)-/.exec(String(res.headers["content-range"] ?? ""));
  return m ? Number(m[1]) === offset : false;
}

/**
 * The body's bytes; a connection that breaks ends the stream instead of
 * failing it (the upload keeps what arrived, the caller resumes from
 * there). More bytes than the descriptor's size is a hard failure.
 */
async function* bodyOf(
  res: IncomingMessage,
  offset: number,
  desc: Descriptor,
  onBytes: (n: number) => void,
  cut: { error?: string },
): AsyncGenerator<Uint8Array> {
  let received = offset;
  try {
    for await (const chunk of res) {
      const c = chunk as Buffer;
      received += c.length;
      if (received > desc.size) {
        res.destroy();
        throw new RegistryError(
          "bad_content",
          `filesystem layer verification failed for digest ${desc.digest}: the registry sent more than the ${desc.size} bytes the manifest gives`,
        );
      }
      onBytes(received);
      yield c;
    }
  } catch (err) {
    if (err instanceof RegistryError || (err as Error).name === "AbortError") throw err;
    cut.error = errorMessage(err);
  }
}
