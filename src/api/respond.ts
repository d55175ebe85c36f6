import type { ServerResponse } from "node:http";
import { errorMessage } from "../util/index.js";
import { httpStatusFor } from "./errors.js";

export function sendJSON(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { "Content-Type": "application/json", "Content-Length": Buffer.byteLength(text) });
  res.end(text);
}

/** dockerd's error body: `{"message": "..."}` with the status from the error's kind. */
export function sendError(res: ServerResponse, err: unknown): void {
  if (res.headersSent) {
    res.destroy(err instanceof Error ? err : undefined);
    return;
  }
  sendJSON(res, httpStatusFor(err), { message: errorMessage(err) });
}

/** Starts a streamed JSON-lines response (build output, pull/load progress), as dockerd does. */
export function startJSONStream(res: ServerResponse): (msg: unknown) => void {
  res.writeHead(200, { "Content-Type": "application/json" });
  return (msg) => {
    if (!res.writableEnded && !res.destroyed) res.write(`${JSON.stringify(msg)}\r\n`);
  };
}
