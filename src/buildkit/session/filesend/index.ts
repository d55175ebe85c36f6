export {
  createFileSendService,
  type ExportResult,
  type ExportTarget,
  type FileSendOptions,
} from "./file-send-service.js";
export type { LocalExportResult } from "./local-receiver.js";
export { FileSendRaw, type RawMessage, RawMessageSchema } from "./raw-message.js";
