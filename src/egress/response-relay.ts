import type { ServerResponse } from "node:http";
import type net from "node:net";
import { endToEndHeaders } from "./headers.js";
import { IdleWatch } from "./idle-watch.js";
import type { UpstreamReader } from "./upstream-reader.js";

const MAX_HEAD = 64 * 1024;
const CRLF2 = Buffer.from("\r\n\r\n");

export interface RelayResult {
  /** Why the response could not be relayed whole; undefined when it was. */
  error?: string;
  /** True when nothing was sent to the client yet (a clean 502/504 is still possible). */
  headersUnsent: boolean;
  timeout?: boolean;
}

type Body =
  | { kind: "none" }
  | { kind: "length"; left: number }
  | { kind: "eof" }
  | { kind: "chunked"; state: "size" | "data" | "data-crlf" | "trailer"; line: string; left: number };

/**
 * Relays an upstream HTTP/1.1 response to the client's ServerResponse: the
 * head is parsed here (interim 1xx responses skipped), hop-by-hop headers
 * dropped, and the body framed by Content-Length, chunked encoding (decoded;
 * Node re-frames it for the client) or the upstream's EOF. Body bytes go to
 * the client without copies, straight from the reader's buffers.
 */
export function relayResponse(
  upstream: net.Socket,
  reader: UpstreamReader,
  method: string,
  res: ServerResponse,
  headTimeoutMs: number,
  /** Resolves when the request body has been sent: the head timeout counts from then (uploads take what they take). */
  requestSent: Promise<void>,
  /** Bound on a body during which no byte arrives (a stalled download); 0: none. */
  bodyIdleTimeoutMs = 0,
): Promise<RelayResult> {
  return new Promise((resolve) => {
    let head: Buffer = Buffer.alloc(0);
    let body: Body | undefined;
    let done = false;
    let idle: IdleWatch | undefined;
    const finish = (r: Omit<RelayResult, "headersUnsent">) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      idle?.stop();
      resolve({ ...r, headersUnsent: !res.headersSent });
    };
    let timer: NodeJS.Timeout | undefined;
    void requestSent.then(() => {
      if (done || body) return;
      timer = setTimeout(
        () =>
          finish({ error: `sent no response within ${Math.round(headTimeoutMs / 1000)} s`, timeout: true }),
        headTimeoutMs,
      );
    });

    const complete = () => {
      res.end();
      finish({});
    };

    /** Writes body bytes; calls back once the client's socket took them all. */
    const writeBody = (chunk: Buffer, release: () => void): void => {
      let pending = 1;
      idle?.hold();
      const settle = () => {
        if (--pending > 0) return;
        idle?.release();
        release();
      };
      const out = (slice: Buffer) => {
        if (slice.length === 0) return;
        pending++;
        res.write(slice, () => settle());
      };
      let i = 0;
      while (i < chunk.length && body && !done) {
        if (body.kind === "length") {
          const n = Math.min(body.left, chunk.length - i);
          out(chunk.subarray(i, i + n));
          i += n;
          body.left -= n;
          if (body.left === 0) complete();
        } else if (body.kind === "eof") {
          out(chunk.subarray(i));
          i = chunk.length;
        } else if (body.kind === "chunked") {
          const b = body;
          if (b.state === "data") {
            const n = Math.min(b.left, chunk.length - i);
            out(chunk.subarray(i, i + n));
            i += n;
            b.left -= n;
            if (b.left === 0) b.state = "data-crlf";
            continue;
          }
          // Line-oriented states: size line, the CRLF after data, trailer lines.
          const nl = chunk.indexOf(10, i);
          const end = nl < 0 ? chunk.length : nl + 1;
          b.line += chunk.toString("latin1", i, end);
          i = end;
          if (nl < 0) {
            if (b.line.length > 4096) return void fail("a chunk-size line is too long");
            continue;
          }
          const line = b.line.replace(/\r?\n$/, "");
          b.line = "";
          if (b.state === "data-crlf") {
            if (line !== "") return void fail("chunk data is not followed by CRLF");
            b.state = "size";
          } else if (b.state === "size") {
            const size = Number.parseInt(line.split(";")[0]?.trim() ?? "", 16);
            if (!/^[0-9a-fA-F]+/.test(line) || !Number.isSafeInteger(size)) {
              return void fail(`bad chunk size "${line.slice(0, 40)}"`);
            }
            if (size === 0) b.state = "trailer";
            else [b.state, b.left] = ["data", size];
          } else if (line === "") {
            complete();
          }
        } else {
          i = chunk.length;
        }
      }
      settle();
    };

    const fail = (why: string) => {
      if (res.headersSent) res.destroy();
      finish({ error: why });
    };

    const onHead = (chunk: Buffer, release: () => void) => {
      head = head.length === 0 ? Buffer.from(chunk) : Buffer.concat([head, chunk]);
      release();
      for (;;) {
        if (head.length >= 5 && head.toString("latin1", 0, 5) !== "HTTP/") {
          const first = head.toString("latin1", 0, Math.min(head.length, 60)).split(/\r?\n/)[0];
          return void fail(`not an HTTP/1.x response: "${first}"`);
        }
        const at = head.indexOf(CRLF2);
        if (at < 0) {
          if (head.length > MAX_HEAD) fail(`the response head exceeds ${MAX_HEAD / 1024} KiB`);
          return;
        }
        const lines = head.toString("latin1", 0, at).split("\r\n");
        const rest = head.subarray(at + 4);
        const m = /^HTTP\/1\.[01] (\d{3})(?: (.*))?$/.exec(lines[0] ?? "");
        if (!m) return void fail(`not an HTTP/1.x response: "${(lines[0] ?? "").slice(0, 60)}"`);
        const status = Number(m[1]);
        if (status >= 100 && status < 200) {
          if (status === 101)
            return void fail("the upstream switched protocols, which this proxy does not relay");
          head = Buffer.from(rest);
          continue; // interim response (100 Continue, 103 Early Hints)
        }
        const raw: string[] = [];
        for (const l of lines.slice(1)) {
          const c = l.indexOf(":");
          if (c <= 0) return void fail(`malformed response header "${l.slice(0, 60)}"`);
          raw.push(l.slice(0, c).trim(), l.slice(c + 1).trim());
        }
        const values = (name: string) =>
          raw.filter((_, i) => i % 2 === 1 && raw[i - 1]?.toLowerCase() === name);
        const value = (name: string) => values(name)[0];
        const te = value("transfer-encoding")?.toLowerCase();
        const cl = value("content-length");
        const keep = endToEndHeaders(raw).filter(([k]) => !(te && k.toLowerCase() === "content-length"));
        if (method === "HEAD" || status === 204 || status === 304) body = { kind: "none" };
        else if (te?.includes("chunked")) body = { kind: "chunked", state: "size", line: "", left: 0 };
        else if (cl !== undefined && values("content-length").length === 1 && /^\d+$/.test(cl)) {
          body = { kind: "length", left: Number(cl) };
        } else if (cl !== undefined) return void fail(`bad Content-Length "${cl.slice(0, 40)}"`);
        else body = { kind: "eof" };
        clearTimeout(timer);
        res.writeHead(status, m[2] ?? "", keep.flat());
        if (body.kind === "none" || (body.kind === "length" && body.left === 0)) {
          complete();
          return;
        }
        idle = new IdleWatch(bodyIdleTimeoutMs, () =>
          fail(`sent no byte of the body for ${Math.round(bodyIdleTimeoutMs / 1000)} s (stalled)`),
        );
        reader.setSink((c, r) => writeBody(c, r));
        if (rest.length > 0) writeBody(rest, () => {});
        return;
      }
    };

    reader.setSink(onHead);
    upstream.once("end", () => {
      if (body?.kind === "eof") complete();
      else if (!done)
        fail(
          body
            ? "the upstream closed the connection mid-body"
            : "the upstream closed the connection without a response",
        );
    });
    upstream.on("error", (err) => fail(`upstream: ${err.message}`));
    res.once("close", () => finish(res.writableFinished ? {} : { error: "the client went away" }));
  });
}
