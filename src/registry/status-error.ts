import type { IncomingMessage } from "node:http";
import { RegistryError, type RegistryErrorCode } from "./errors.js";
import { operation, readBody } from "./transport.js";

/**
 * The distribution error body's text as dockerd prints it (errcode.Error):
 * `manifest unknown: manifest unknown`, `unauthorized: authentication required`.
 */
export function describeErrorBody(body: Buffer, status: number): string {
  try {
    const doc = JSON.parse(body.toString("utf8")) as {
      errors?: { code?: string; message?: string }[];
      details?: string;
      error?: string;
    };
    if (Array.isArray(doc.errors) && doc.errors.length > 0) {
      return doc.errors
        .map((e) => {
          const code = (e.code ?? "unknown").toLowerCase().replace(/_/g, " ");
          return e.message ? `${code}: ${e.message}` : code;
        })
        .join("; ");
    }
    if (typeof doc.details === "string") return doc.details;
    if (typeof doc.error === "string") return doc.error;
  } catch {}
  const text = body.toString("utf8").trim().slice(0, 200);
  return text || `${status} ${statusText(status)}`;
}

function statusText(status: number): string {
  return (
    { 401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed" }[status] ??
    (status >= 500 ? "Server Error" : "Error")
  );
}

export function codeForStatus(status: number): RegistryErrorCode {
  if (status === 401) return "unauthorized";
  if (status === 403) return "denied";
  if (status === 404) return "not_found";
  if (status >= 500) return "unreachable";
  return "bad_content";
}

/** Reads the error body of a failed response and throws it as dockerd words it. */
export async function throwStatus(res: IncomingMessage, method: string, url: URL): Promise<never> {
  const status = res.statusCode ?? 0;
  const body = await readBody(res, 64 * 1024, operation(method, url)).catch(() => Buffer.alloc(0));
  const detail = describeErrorBody(body, status);
  throw new RegistryError(codeForStatus(status), `${operation(method, url)}: ${detail}`);
}
