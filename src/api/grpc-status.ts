import { fromBinary, toBinary } from "@bufbuild/protobuf";
import { mapStatusText, StatusResponseSchema } from "../buildkit/index.js";
import { storeExportText } from "../images/index.js";
import type { ResponseStreamRewrite } from "./grpc-proxy.js";

export const STATUS_PATH = "/moby.buildkit.v1.Control/Status";

/**
 * Control.Status as a dockerd client shows it: the image exporter's push
 * into the store reads as dockerd's local load ("naming to
 * docker.io/library/app:1"), never naming the registry endpoint inside the
 * sandbox it goes through (`127.0.0.1:5000/library/app:1`).
 */
export class StatusRewrite implements ResponseStreamRewrite {
  constructor(private readonly registryHost: string) {}

  responseMessage(msg: Uint8Array): Uint8Array {
    const bytes = Buffer.from(msg.buffer, msg.byteOffset, msg.byteLength);
    if (!bytes.includes(this.registryHost) && !bytes.includes("pushing layers")) return msg;
    const s = fromBinary(StatusResponseSchema, msg);
    const shown = mapStatusText(s, (t) => storeExportText(this.registryHost, t));
    return shown === s ? msg : toBinary(StatusResponseSchema, shown);
  }
}
