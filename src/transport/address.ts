import { isIP } from "node:net";
import { isAbsolute } from "node:path";
import { TransportError } from "./errors.js";

export type ParsedAddress =
  | { scheme: "unix"; path: string }
  | { scheme: "tcp"; host: string; port: number }
  | { scheme: "vsock-uds"; path: string; port: number }
  | { scheme: "vsock"; cid: number; port: number };

const U32_MAX = 0xffff_ffff;

/**
 * Parses the address forms Arca understands. Ports may be 0 only where the
 * caller allows it (listeners); vsock ports and CIDs are 32-bit.
 */
export function parseAddress(addr: string, opts: { allowPortZero?: boolean } = {}): ParsedAddress {
  const m = /^([a-z][a-z0-9+.-]*):\/\/(.*)$/.exec(addr);
  if (!m) throw invalid(addr, "expected <scheme>://...");
  const [, scheme, rest] = m as unknown as [string, string, string];
  switch (scheme) {
    case "unix":
      return { scheme, path: absPath(addr, rest) };
    case "tcp": {
      const { host, port } = hostPort(addr, rest, opts.allowPortZero === true);
      return { scheme, host, port };
    }
    case "vsock-uds": {
      const i = rest.lastIndexOf(":");
      if (i < 0) throw invalid(addr, "expected vsock-uds:///abs/path.sock:PORT");
      return {
        scheme,
        path: absPath(addr, rest.slice(0, i)),
        port: int(addr, rest.slice(i + 1), 0, U32_MAX),
      };
    }
    case "vsock": {
      const mm = /^(\d+):(\d+)$/.exec(rest);
      if (!mm) throw invalid(addr, "expected vsock://CID:PORT");
      return {
        scheme,
        cid: int(addr, mm[1] as string, 0, U32_MAX),
        port: int(addr, mm[2] as string, 0, U32_MAX),
      };
    }
    default:
      throw invalid(addr, `unsupported scheme "${scheme}"`);
  }
}

/** Formats host:port the way URLs want it (IPv6 literals in brackets). */
export function formatHostPort(host: string, port: number): string {
  return isIP(host) === 6 ? `[${host}]:${port}` : `${host}:${port}`;
}

function hostPort(addr: string, rest: string, allowZero: boolean): { host: string; port: number } {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:/[\]]+)):(\d+)$/.exec(rest);
  if (!m) throw invalid(addr, "expected tcp://host:port");
  const host = (m[1] ?? m[2]) as string;
  if (m[1] !== undefined && isIP(host) !== 6) throw invalid(addr, "bad IPv6 literal");
  return { host, port: int(addr, m[3] as string, allowZero ? 0 : 1, 65535) };
}

function absPath(addr: string, p: string): string {
  if (!p || !isAbsolute(p) || p.includes("\0")) throw invalid(addr, "expected an absolute socket path");
  return p;
}

function int(addr: string, s: string, min: number, max: number): number {
  if (!/^\d+$/.test(s)) throw invalid(addr, `"${s}" is not a number`);
  const n = Number(s);
  if (n < min || n > max) throw invalid(addr, `${n} is out of range ${min}..${max}`);
  return n;
}

function invalid(addr: string, why: string): TransportError {
  return new TransportError("invalid_address", `invalid address ${JSON.stringify(addr)}: ${why}`);
}
