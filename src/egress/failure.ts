import { hostPort } from "./address.js";
import type { EgressDecision } from "./policy.js";

/** A refusal the proxy answers with instead of a tunnel or a forwarded response. */
export interface Failure {
  status: number;
  /**
   * The status line's reason phrase carries the whole story: Go's
   * net/http (BuildKit, the daemon's pulls) reports a refused CONNECT with
   * that text alone.
   */
  reason: string;
  headers: Record<string, string>;
  body: string;
}

/** Header values and reason phrases must be visible ASCII. */
export function printable(s: string): string {
  return s.replace(/[^\x20-\x7e]/g, "?");
}

export function authFailure(error: string): Failure {
  const msg = `arca egress: ${error}; use the proxy URL (HTTP_PROXY) Arca issued for this build`;
  return {
    status: 407,
    reason: printable(`Proxy Authentication Required (${msg})`),
    headers: { "Proxy-Authenticate": 'Basic realm="arca-egress"' },
    body: `${msg}\n`,
  };
}

export function denied(
  method: string,
  host: string,
  port: number,
  d: EgressDecision,
  policyFile: string,
): Failure {
  const target = hostPort(host, port);
  const how = d.hint ?? `edit ${policyFile} and run \`arca egress reload\``;
  return {
    status: 403,
    reason: printable(
      `Forbidden (arca egress denied ${method} ${target} by rule "${d.rule}": ${d.reason}; to allow it, ${how})`,
    ),
    headers: {
      "X-Arca-Egress-Denied": printable(`${target}; rule="${d.rule}"; policy=${policyFile}`),
      "X-Arca-Egress-Hint": printable(how),
    },
    body: `arca egress: ${method} ${target} denied by rule "${d.rule}"\nreason: ${d.reason}\nto allow it: ${how}\n`,
  };
}

export function upstreamFailure(status: 400 | 502 | 504, message: string): Failure {
  const text = status === 504 ? "Gateway Timeout" : status === 400 ? "Bad Request" : "Bad Gateway";
  return {
    status,
    reason: printable(`${text} (arca egress: ${message})`),
    headers: { "X-Arca-Egress-Error": printable(message) },
    body: `arca egress: ${message}\n`,
  };
}

/** The failure as raw HTTP/1.1 bytes, for a CONNECT socket that no ServerResponse owns. */
export function rawResponse(f: Failure): string {
  const body = Buffer.from(f.body);
  const lines = [`HTTP/1.1 ${f.status} ${f.reason}`];
  for (const [k, v] of Object.entries(f.headers)) lines.push(`${k}: ${v}`);
  lines.push(
    "Content-Type: text/plain; charset=utf-8",
    `Content-Length: ${body.length}`,
    "Connection: close",
  );
  return `${lines.join("\r\n")}\r\n\r\n${f.body}`;
}
