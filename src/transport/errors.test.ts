import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ArcaError } from "../util/index.js";
import { TransportError, toTransportError } from "./index.js";

function errno(code: string, message = code): Error {
  return Object.assign(new Error(message), { code });
}

describe("toTransportError", () => {
  it("maps errno codes to transport codes and kinds", () => {
    const cases: Array<[string, string, string]> = [
      ["ECONNREFUSED", "refused", "unavailable"],
      ["ENOENT", "not_found", "unavailable"],
      ["ETIMEDOUT", "timeout", "unavailable"],
      ["ECONNRESET", "reset", "unavailable"],
      ["EPIPE", "reset", "unavailable"],
      ["EACCES", "permission_denied", "failed_precondition"],
      ["EADDRINUSE", "address_in_use", "conflict"],
      ["ERR_SSL_WRONG_VERSION_NUMBER", "tls_failed", "unavailable"],
      ["ABORT_ERR", "aborted", "canceled"],
    ];
    for (const [errnoCode, code, kind] of cases) {
      const e = toTransportError(errno(errnoCode), "dial x");
      assert.ok(e instanceof ArcaError);
      assert.equal(e.code, code, errnoCode);
      assert.equal(e.kind, kind, errnoCode);
      assert.match(e.message, /^dial x: /);
    }
  });

  it("walks the cause chain and keeps the original as cause", () => {
    const root = errno("ECONNREFUSED", "connect ECONNREFUSED /x.sock");
    const wrapped = new Error("outer", { cause: new Error("middle", { cause: root }) });
    const e = toTransportError(wrapped, "dial");
    assert.equal(e.code, "refused");
    assert.equal(e.cause, wrapped);
  });

  it("returns a TransportError found in the chain unchanged", () => {
    const inner = new TransportError("handshake_failed", "nope");
    assert.equal(toTransportError(new Error("x", { cause: inner }), "dial"), inner);
  });

  it("falls back to dial_failed for unknown errors", () => {
    const e = toTransportError("weird", "dial");
    assert.equal(e.code, "dial_failed");
    assert.equal(e.kind, "unavailable");
  });
});
