import { toBinary } from "@bufbuild/protobuf";
import type { StatusResponse } from "../buildkit/index.js";
// The schema is not re-exported by buildkit/index.ts (only the type is); the encoding must be
// the generated one, so this reaches into the generated code directly.
import { StatusResponseSchema } from "../buildkit/index.js";
import type { JsonMessage } from "./json-message.js";

/**
 * dockerd's BuildKit progress line: the StatusResponse as protobuf bytes,
 * which Go's json.Marshal([]byte) writes as a standard-base64 string.
 */
export function traceMessage(status: StatusResponse): JsonMessage {
  return {
    id: "moby.buildkit.trace",
    aux: Buffer.from(toBinary(StatusResponseSchema, status)).toString("base64"),
  };
}

export function imageIdMessage(imageId: string): JsonMessage {
  return { id: "moby.image.id", aux: { ID: imageId } };
}
