/** One line of dockerd's build output stream (pkg/jsonmessage.JSONMessage, the fields builds use). */
export interface JsonMessage {
  stream?: string;
  status?: string;
  id?: string;
  aux?: unknown;
  error?: string;
  errorDetail?: { code?: number; message: string };
}

export type EmitMessage = (msg: JsonMessage) => void;

/** dockerd's streamformatter.FormatError shape. */
export function errorMessageLine(message: string, code?: number): JsonMessage {
  return { errorDetail: code === undefined ? { message } : { code, message }, error: message };
}
