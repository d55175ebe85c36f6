import { Transform, type TransformCallback } from "node:stream";
import type { OffloadedSha256 } from "./offloaded-sha256.js";

export interface HashingTransformOptions {
  /** Runs before each chunk is hashed; an error it returns fails the stream. */
  check?: (chunk: Uint8Array) => Error | undefined;
  /** A failing hash then stops hashing and the bytes go on (the owner hashes again later); without it the stream fails. */
  onHashError?: () => void;
  /** After the last chunk was taken; an error it resolves to fails the stream (a digest that does not match). */
  atEnd?: () => Promise<Error | undefined>;
  highWaterMark?: number;
}

/**
 * Passes each chunk on once the hash took it, waiting while the hashing thread is behind (that
 * wait is the stream's backpressure). The hash stays the caller's: it may outlive the stream.
 */
export function hashingTransform(
  initial: OffloadedSha256 | undefined,
  opts: HashingTransformOptions = {},
): Transform {
  let hash = initial;
  const hashFailed = (err: unknown, chunk: Uint8Array, cb: TransformCallback) => {
    if (!opts.onHashError) {
      cb(err as Error);
      return;
    }
    hash = undefined;
    opts.onHashError();
    cb(null, chunk);
  };
  return new Transform({
    ...(opts.highWaterMark !== undefined && { highWaterMark: opts.highWaterMark }),
    transform(chunk: Uint8Array, _enc, cb) {
      const refused = opts.check?.(chunk);
      if (refused) {
        cb(refused);
        return;
      }
      let taken: Promise<void> | undefined;
      try {
        taken = hash?.update(chunk);
      } catch (err) {
        hashFailed(err, chunk, cb);
        return;
      }
      if (taken)
        taken.then(
          () => cb(null, chunk),
          (err: unknown) => hashFailed(err, chunk, cb),
        );
      else cb(null, chunk);
    },
    flush(cb) {
      if (!opts.atEnd) {
        cb();
        return;
      }
      opts.atEnd().then((err) => cb(err ?? null), cb);
    },
  });
}
