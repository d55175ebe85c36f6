import { fromBinary, toBinary } from "@bufbuild/protobuf";
import {
  mapStatusText,
  StatusRequestSchema,
  StatusResponseSchema,
  statusHasVertexError,
} from "../buildkit/index.js";
import { HOST_LOOPBACK_NAME } from "../egress/index.js";
import { storeExportText } from "../images/index.js";
import { type EgressReports, egressStatusMessage } from "./grpc-egress-report.js";
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
  #failed = false;

  constructor(
    /** Set once the call is placed: the registry host of the backend it follows. */
    public registryHost: string,
    private readonly storeOnly?: StoreOnlyRefs,
    /** When given, the stream ends with the solve's egress report (summary, denials). */
    private readonly egressReports?: EgressReports,
    /** The domain a user named for each host-loopback port (`localhost:5000`), see SolveRewrite. */
    private readonly loopbackDomains?: Map<number, string>,
  ) {}

  /** The solve this stream follows (StatusRequest.Ref). */
  requestMessage(msg: Uint8Array): void {
    this.#ref = fromBinary(StatusRequestSchema, msg).Ref;
  }

  responseMessage(msg: Uint8Array): Uint8Array {
    const bytes = Buffer.from(msg.buffer, msg.byteOffset, msg.byteLength);
    const named =
      bytes.includes(this.registryHost) ||
      bytes.includes("pushing layers") ||
      bytes.includes(HOST_LOOPBACK_NAME);
    // A failed solve's report also names BuildKit's failed connections: watch for a failed vertex.
    if (!named && (!this.egressReports || this.#failed)) return msg;
    if (statusHasVertexError(msg)) this.#failed = true;
    if (!named) return msg;
    const s = fromBinary(StatusResponseSchema, msg);
    const storeOnly = this.storeOnly?.has(this.#ref) ?? false;
    const shown = mapStatusText(s, (t) => this.#userName(storeExportText(this.registryHost, t, storeOnly)));
    return shown === s ? msg : toBinary(StatusResponseSchema, shown);
  }

  /** A push to the user's `localhost:PORT` reads as such, not as the name it went out under. */
  #userName(text: string): string {
    if (!text.includes(HOST_LOOPBACK_NAME)) return text;
    return text.replace(
      new RegExp(`${HOST_LOOPBACK_NAME.replace(/\./g, "\\.")}:(\\d+)`, "g"),
      (_, port: string) => this.loopbackDomains?.get(Number(port)) ?? `localhost:${port}`,
    );
  }

  /** After BuildKit's last update: the egress report of the solve, if it had a step network. */
  endMessages(): Uint8Array[] {
    const report = this.#ref ? this.egressReports?.take(this.#ref) : undefined;
    return report ? [egressStatusMessage(this.#ref, report({ failed: this.#failed }))] : [];
  }
}
