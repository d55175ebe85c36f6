import { fromBinary, toBinary } from "@bufbuild/protobuf";
import { mapStatusText, StatusRequestSchema, StatusResponseSchema } from "../buildkit/index.js";
import { storeExportText } from "../images/index.js";
import type { ResponseStreamRewrite } from "./grpc-proxy.js";
import type { StoreOnlyRefs } from "./grpc-store-refs.js";

export const STATUS_PATH = "/moby.buildkit.v1.Control/Status";

/**
 * Control.Status as a dockerd client shows it: the image exporter's push
 * into the store reads as dockerd's local load ("naming to
 * docker.io/library/app:1"), never naming the registry endpoint inside the
 * sandbox it goes through (`127.0.0.1:5000/library/app:1`).
 */
export class StatusRewrite implements ResponseStreamRewrite {
  #ref = "";

  constructor(
    private readonly registryHost: string,
    private readonly storeOnly?: StoreOnlyRefs,
  ) {}

  /** The solve this stream follows (StatusRequest.Ref). */
  requestMessage(msg: Uint8Array): void {
    this.#ref = fromBinary(StatusRequestSchema, msg).Ref;
  }

  responseMessage(msg: Uint8Array): Uint8Array {
    const bytes = Buffer.from(msg.buffer, msg.byteOffset, msg.byteLength);
    if (!bytes.includes(this.registryHost) && !bytes.includes("pushing layers")) return msg;
    const s = fromBinary(StatusResponseSchema, msg);
    const storeOnly = this.storeOnly?.has(this.#ref) ?? false;
    const shown = mapStatusText(s, (t) => storeExportText(this.registryHost, t, storeOnly));
    return shown === s ? msg : toBinary(StatusResponseSchema, shown);
  }
}
